"""The hardening every pod mlplat emits shares: Pod Security "restricted" and bounded resources.

One place for the user, the security contexts and the default requests/limits, so the KFP
executors, TrainJob nodes, Katib trials, KServe components and the monitor cannot drift apart.
"""

from __future__ import annotations

from typing import Any

UID = 1000  # the image's non-root user `mlplat` (Dockerfile), who owns its HOME
DEFAULT_CPU, DEFAULT_MEMORY = "1", "2Gi"  # a step that names no resources gets these as requests and limits
TMP_SIZE_LIMIT = "1Gi"


def container_security_context() -> dict[str, Any]:
    """Restricted PSS for one container: non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp."""
    return {"runAsNonRoot": True, "runAsUser": UID, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def resources(cpu: str | None, memory: str | None, extra: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """requests = limits: the spec's cpu and memory, or the defaults for what it leaves out."""
    limits = {"cpu": cpu or DEFAULT_CPU, "memory": memory or DEFAULT_MEMORY, **(extra or {})}
    return {"requests": dict(limits), "limits": dict(limits)}
