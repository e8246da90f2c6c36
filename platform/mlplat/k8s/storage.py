"""How an emitted pod reaches the model store: its credentials and, for a pvc:// store, its claim.

KServe's storage initializer takes S3 credentials from a Secret (keys AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY) named by the InferenceService's service account. The pods mlplat runs
itself (the TrainJob nodes that publish, the monitor that reads) take the same keys from the same
Secret as environment variables, which mlplat.sources reads as KServe does; an optional
AWS_ENDPOINT_URL key in it points them at an S3-compatible server (MinIO). A pvc://CLAIM/PATH store
is the claim mounted where KServe mounts one (/mnt/pvc), so the same URI resolves in every pod.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from mlplat.sources import KSERVE_PVC_ROOT, scheme

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
OPTIONAL_KEYS = ("AWS_ENDPOINT_URL",)
STORE_VOLUME = "model-store"


def credential_env(secret: str | None) -> list[dict[str, Any]]:
    """Env vars (API JSON) taking the store's credentials from `secret`; none without one (in-cluster identity)."""
    if not secret:
        return []
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, **({"optional": True} if optional else {})}}}
            for key, optional in [*((k, False) for k in CREDENTIAL_KEYS), *((k, True) for k in OPTIONAL_KEYS)]]


def pvc_claim(uri: str) -> str | None:
    """The claim a pvc:// URI lives on (None for any other URI)."""
    return urlparse(uri).netloc if scheme(uri) == "pvc" else None


def store_volume(uri: str, read_only: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) that make a pvc:// URI resolve in a pod; nothing for object stores."""
    claim = pvc_claim(uri)
    if claim is None:
        return [], []
    return ([{"name": STORE_VOLUME, "persistentVolumeClaim": {"claimName": claim, **({"readOnly": True} if read_only else {})}}],
            [{"name": STORE_VOLUME, "mountPath": KSERVE_PVC_ROOT, **({"readOnly": True} if read_only else {})}])
