"""The memory-backed /dev/shm of an image spec's pods.

A DataLoader with workers passes each decoded batch from the worker processes through shared memory;
a container's default /dev/shm (64 MiB under Docker and containerd) is too small for that and the
workers die with a bus error. Every pod an image spec generates (KFP tasks, the TrainJob's nodes, Katib
trials) mounts an emptyDir with medium Memory at /dev/shm, sized by `dataset.image.shm_size`. Its use
counts against the container's memory limit, so the sizeLimit also bounds what workers can pin there.
"""

from __future__ import annotations

from typing import Any

from mlplat.spec import PipelineSpec

VOLUME, MOUNT_PATH, MEDIUM = "dshm", "/dev/shm", "Memory"


def size(spec: PipelineSpec) -> str | None:
    """The /dev/shm size of the spec's pods, or None (tabular specs mount nothing)."""
    return spec.dataset.image.shm_size if spec.dataset.image is not None else None


def volume(spec: PipelineSpec) -> dict[str, Any] | None:
    """The pod volume (Kubernetes JSON), or None."""
    limit = size(spec)
    return None if limit is None else {"name": VOLUME, "emptyDir": {"medium": MEDIUM, "sizeLimit": limit}}


def mount() -> dict[str, Any]:
    return {"name": VOLUME, "mountPath": MOUNT_PATH}


def add_to_task(task: Any, spec: PipelineSpec) -> None:
    """Mount it on a KFP task (kfp-kubernetes' emptyDir mount), when the spec is an image spec."""
    limit = size(spec)
    if limit is not None:
        from kfp import kubernetes

        kubernetes.empty_dir_mount(task, volume_name=VOLUME, mount_path=MOUNT_PATH, medium=MEDIUM, size_limit=limit)
