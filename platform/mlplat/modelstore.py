"""The model store by URI: where published models live for serving (s3://, gs://, pvc://CLAIM/PATH, file://, a path).

    <store>/
      models/<version>/   one published model directory per version (a run id); never rewritten
      latest              a small JSON object {"version": ..., "uri": ...}: the last good publish

It keeps the run store's guarantees. A version is invisible until `latest` names it: on a
filesystem (local, pvc://) the model is copied to a hidden temporary directory and renamed into
place, on an object store it is uploaded under its own fresh prefix, `model.json` last; either way
`latest` is written last, and only after the upload completed. A failed or interrupted publish
(and a failed run, which never publishes) leaves `latest` where it was.

Downloads use KServe's own storage code (`kserve_storage.Storage`), so what `mlplat serve` loads
here is what the storage initializer delivers to /mnt/models on a cluster. Object-store settings
come from KServe's environment variables (see mlplat.sources).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlplat.errors import ModelDirError, UsageError
from mlplat.sources import OBJECT_STORES, filesystem, local_path, scheme
from mlplat.spec import run_id_ok

LATEST, VERSIONS = "latest", "models"
STORE_SCHEMES = (*OBJECT_STORES, "pvc", "file")
CACHE_ENV = "MLPLAT_MODEL_CACHE"  # where downloaded models are kept (default ~/.cache/mlplat/models)


def is_store_uri(ref: str) -> bool:
    """Whether a model reference names a model store (or a model in one) by URI."""
    return scheme(ref) in STORE_SCHEMES


def is_remote_store(ref: str) -> bool:
    """Whether a store URI is an object store (downloaded), not a filesystem (resolved in place)."""
    return scheme(ref) in OBJECT_STORES


@dataclass(frozen=True)
class ModelStore:
    uri: str

    def __post_init__(self) -> None:
        if not self.uri:
            raise UsageError("model store URI is empty")
        object.__setattr__(self, "uri", self.uri.rstrip("/"))

    @property
    def remote(self) -> bool:
        return scheme(self.uri) in OBJECT_STORES

    def version_uri(self, version: str) -> str:
        """A version's URI, with the trailing '/': KServe's S3 download lists by prefix, and without
        it `models/run1` would also take `models/run10/`."""
        return f"{self.uri}/{VERSIONS}/{version}/"

    def latest(self) -> dict[str, str] | None:
        """The `latest` pointer ({"version", "uri"}), or None before the first publish."""
        try:
            text = self._read_text(LATEST)
        except FileNotFoundError:
            return None
        try:
            pointer = json.loads(text)
            return {"version": str(pointer["version"]), "uri": str(pointer["uri"])}
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelDirError(f"{self.uri}/{LATEST}: not a model store pointer ({exc})") from None

    def publish(self, model_dir: Path, version: str) -> str:
        """Publish a model directory as `version`, then point `latest` at it; returns the version's URI."""
        from mlplat.modeldir import MODEL_JSON

        if not run_id_ok(version):
            raise UsageError(f"invalid model version {version!r}: use letters, digits, '.', '_' and '-'")
        if not (model_dir / MODEL_JSON).is_file():
            raise ModelDirError(f"not a model directory (no {MODEL_JSON}): {model_dir}")
        files = sorted((p for p in model_dir.rglob("*") if p.is_file()), key=lambda p: (p.name == MODEL_JSON, str(p)))
        if self.remote:
            self._upload(model_dir, files, version)
        else:
            self._copy(model_dir, version)
        uri = self.version_uri(version)
        self._write_text(LATEST, json.dumps({"version": version, "uri": uri}))  # last: the publish's commit point
        return uri

    def _upload(self, model_dir: Path, files: list[Path], version: str) -> None:
        fs, root = filesystem(self.uri)
        prefix = f"{root}/{VERSIONS}/{version}"
        if fs.exists(prefix):
            raise UsageError(f"{self.version_uri(version)} exists already: published versions are never rewritten")
        for path in files:  # model.json last: a prefix without it is an interrupted upload
            fs.put_file(str(path), f"{prefix}/{path.relative_to(model_dir).as_posix()}")

    def _copy(self, model_dir: Path, version: str) -> None:
        versions = self._local_root() / VERSIONS
        target = versions / version
        if target.exists():
            raise UsageError(f"{target} exists already: published versions are never rewritten")
        versions.mkdir(parents=True, exist_ok=True)
        staging = versions / f".tmp-{version}-{secrets.token_hex(4)}"
        shutil.copytree(model_dir, staging)
        for path in staging.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        staging.rename(target)  # atomic on one filesystem

    def _local_root(self) -> Path:
        return local_path(self.uri)

    def _read_text(self, name: str) -> str:
        if self.remote:
            fs, root = filesystem(self.uri)
            return fs.cat_file(f"{root}/{name}").decode()
        path = self._local_root() / name
        if not path.is_file():
            raise FileNotFoundError(path)
        return path.read_text()

    def _write_text(self, name: str, text: str) -> None:
        if self.remote:
            fs, root = filesystem(self.uri)
            fs.pipe_file(f"{root}/{name}", text.encode())  # one PUT: readers see the old object or the new one
            return
        local = self._local_root()
        local.mkdir(parents=True, exist_ok=True)
        tmp = local / f".{name}.tmp-{secrets.token_hex(4)}"
        tmp.write_text(text)
        os.replace(tmp, local / name)


def model_uri(ref: str) -> str:
    """The URI of the model a store URI names: `latest`'s version for a store root, else `ref` itself
    (a version, or any model directory by URI), with the trailing '/' KServe needs for a prefix."""
    pointer = ModelStore(ref).latest()
    return pointer["uri"] if pointer else ref.rstrip("/") + "/"


def resolve(ref: str, cache_dir: Path | None = None) -> Path:
    """A store URI (a store root, a version, or a model directory by URI) → a local model directory.

    Filesystem stores resolve in place; object stores are downloaded with KServe's storage code into
    the cache (a version once: versions are immutable)."""
    from mlplat.modeldir import MODEL_JSON

    uri = model_uri(ref)
    if scheme(uri) not in OBJECT_STORES:
        path = local_path(uri)
        if not (path / MODEL_JSON).is_file():
            raise ModelDirError(f"no model at {ref} (no {LATEST} pointer and no {MODEL_JSON} at {path})")
        return path
    cache = cache_dir or Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "mlplat" / "models"))
    target = cache / hashlib.sha256(uri.encode()).hexdigest()[:20]
    versioned = ModelStore(ref).latest() is not None or f"/{VERSIONS}/" in uri
    if versioned and (target / MODEL_JSON).is_file():
        return target
    return _download(uri, target, ref)


def _download(uri: str, target: Path, ref: str) -> Path:
    from kserve_storage import Storage

    from mlplat.modeldir import MODEL_JSON

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".tmp-{target.name}-{secrets.token_hex(4)}"
    try:
        Storage.download(uri, str(staging))
    except Exception as exc:  # KServe raises plain exceptions for a missing prefix, credentials, endpoint
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelDirError(f"cannot download the model at {uri}: {exc}") from None
    if not (staging / MODEL_JSON).is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelDirError(f"no model at {ref}: {uri} has no {MODEL_JSON} (an interrupted upload, or not a model)")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target

