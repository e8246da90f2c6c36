"""Data and model locations by URI: local paths, file://, http(s)://, s3://, gs:// (read through fsspec;
gs:// through mlplat.gcs, an fsspec filesystem on google-cloud-storage).

S3 settings come from the environment variables KServe's storage initializer reads (and its
`s3_secret.go` sets from a secret's annotations), so one secret serves ingest, publishing and serving:

    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   credentials (else botocore's usual chain)
    AWS_ENDPOINT_URL                           the endpoint, e.g. http://minio.kubeflow:9000
    S3_ENDPOINT, S3_USE_HTTPS                  host[:port] and "0" for http, when AWS_ENDPOINT_URL is unset
    AWS_DEFAULT_REGION, S3_VERIFY_SSL ("0"), AWS_CA_BUNDLE, awsAnonymousCredential ("true")

Every file read records a `Fingerprint`: the content's sha256 for local and http(s) files, the
object's VersionId or GCS generation (else its ETag) for object stores. Runs record it, and the ingest cache key
includes it, so an edited file at the same URI never yields stale data.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import unquote, urlparse

from mlplat.errors import UsageError

OBJECT_STORES = ("s3", "gs", "gcs")
REMOTE_SCHEMES = (*OBJECT_STORES, "http", "https")
PVC_ROOT_ENV, KSERVE_PVC_ROOT = "MLPLAT_PVC_ROOT", "/mnt/pvc"  # where pvc://CLAIM/PATH is mounted (KServe's path)
_CHUNK = 1 << 20
# the variables a remote filesystem is built from: a cached one is reused only while they are unchanged
CONNECTION_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "S3_ENDPOINT", "S3_USE_HTTPS",
                  "AWS_DEFAULT_REGION", "S3_VERIFY_SSL", "AWS_CA_BUNDLE", "awsAnonymousCredential",
                  "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")


@dataclass(frozen=True)
class Fingerprint:
    """What identifies one version of a file: `kind` sha256 | version | etag | builtin | listing (an image set: mlplat.image_sources)."""

    uri: str
    kind: Literal["sha256", "version", "etag", "builtin", "listing"]
    value: str
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        """The short form a cache key includes: `kind:value`."""
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Fetched:
    """A file read from its URI: its bytes (remote) or its local path, and its fingerprint."""

    uri: str
    fingerprint: Fingerprint
    local_path: Path | None = None
    content: bytes | None = None

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix.lower()

    def open(self) -> IO[bytes]:
        if self.local_path is not None:
            return self.local_path.open("rb")
        assert self.content is not None
        return io.BytesIO(self.content)

    def read(self) -> bytes:
        with self.open() as handle:
            return handle.read()


def scheme(location: str) -> str:
    """The URI scheme of a location ('' for a plain path; Windows drive letters are paths)."""
    parsed = urlparse(location)
    return parsed.scheme.lower() if "://" in location and len(parsed.scheme) > 1 else ""


def is_remote(location: str) -> bool:
    return scheme(location) in REMOTE_SCHEMES


def local_path(location: str, base_dir: Path | None = None, field: str = "") -> Path:
    """A local path, file:// or pvc:// URI as a path; relative paths resolve against `base_dir`."""
    kind = scheme(location)
    if kind == "file":
        path = Path(unquote(urlparse(location).path))
    elif kind == "pvc":
        # KServe mounts the claim at /mnt/pvc; pvc://CLAIM/PATH is PATH under that mount
        uri = urlparse(location)
        path = Path(os.environ.get(PVC_ROOT_ENV, KSERVE_PVC_ROOT)) / unquote(uri.path).lstrip("/")
    elif kind:
        raise UsageError(f"{field + ': ' if field else ''}{location}: unsupported scheme {kind}:// "
                         f"(use a local path, file://, pvc://, {', '.join(f'{s}://' for s in REMOTE_SCHEMES)})")
    else:
        path = Path(location).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def s3_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """s3fs storage options from KServe's storage-initializer environment variables."""
    env = os.environ if env is None else env
    client: dict[str, Any] = {}
    endpoint = env.get("AWS_ENDPOINT_URL") or env.get("S3_ENDPOINT")
    if endpoint:
        if "://" not in endpoint:  # S3_ENDPOINT is host[:port]; S3_USE_HTTPS=0 means plain http
            endpoint = f"{'http' if env.get('S3_USE_HTTPS', '1') == '0' else 'https'}://{endpoint}"
        client["endpoint_url"] = endpoint
    if env.get("AWS_DEFAULT_REGION"):
        client["region_name"] = env["AWS_DEFAULT_REGION"]
    if env.get("S3_VERIFY_SSL", "").lower() in ("0", "false"):
        client["verify"] = False
    elif env.get("AWS_CA_BUNDLE"):
        client["verify"] = env["AWS_CA_BUNDLE"]
    options: dict[str, Any] = {"client_kwargs": client}
    if env.get("awsAnonymousCredential", "").lower() == "true":
        options["anon"] = True
    elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        options["key"], options["secret"] = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    return options


def filesystem(uri: str) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for a remote URI. A fresh instance without listing caches:
    a cached listing would report an old ETag for an object rewritten in this process."""
    import fsspec

    kind = scheme(uri)
    options: dict[str, Any] = {"skip_instance_cache": True}
    if kind == "s3":
        options |= s3_options() | {"use_listings_cache": False}
    try:
        if kind in ("gs", "gcs"):
            from mlplat.gcs import GCSFileSystem  # google-cloud-storage, as KServe's storage code reads gs://

            fs = GCSFileSystem(**options)
        else:
            fs = fsspec.filesystem(kind, **options)
    except ImportError as exc:  # s3:// needs s3fs, gs:// google-cloud-storage, http(s):// aiohttp
        from mlplat.extras import install_hint

        extra = {"s3": "s3", "gs": "gcs", "gcs": "gcs"}.get(kind)
        raise UsageError(f"{uri}: reading {kind}:// needs a package that is not installed ({exc})"
                         + (f": {install_hint(extra)}" if extra else "")) from None
    return fs, fs._strip_protocol(uri) if kind in OBJECT_STORES else uri


def fetch(location: str, base_dir: Path, field: str = "dataset.source") -> Fetched:
    """Read one file from a path or URI, with its fingerprint. A missing file is a UsageError naming it."""
    if not is_remote(location):
        file = local_path(location, base_dir, field)
        if not file.is_file():
            raise UsageError(f"{field}: data file not found: {file}")
        return Fetched(str(file), Fingerprint(str(file), "sha256", sha256_file(file), file.stat().st_size), local_path=file)
    fs, path = filesystem(location)
    try:
        if scheme(location) in OBJECT_STORES:
            found = _object_fingerprint(fs.info(path), location)
            content = fs.cat_file(path)
        else:
            content = fs.cat_file(path)
            found = Fingerprint(location, "sha256", hashlib.sha256(content).hexdigest(), len(content))
    except FileNotFoundError:
        raise UsageError(f"{field}: no such object: {location}") from None
    except UsageError:
        raise
    except Exception as exc:  # credentials, endpoint, permissions: name the URI, no traceback
        raise UsageError(f"{field}: cannot read {location}: {type(exc).__name__}: {exc}") from None
    return Fetched(location, found, content=content)


def fingerprint(location: str, base_dir: Path, field: str = "dataset.source") -> Fingerprint:
    """A file's fingerprint without keeping its bytes: object stores answer from metadata alone."""
    if location.startswith("sklearn:"):
        import sklearn

        return Fingerprint(location, "builtin", f"scikit-learn {sklearn.__version__}")
    if scheme(location) in OBJECT_STORES:
        fs, path = filesystem(location)
        try:
            return _object_fingerprint(fs.info(path), location)
        except FileNotFoundError:
            raise UsageError(f"{field}: no such object: {location}") from None
        except Exception as exc:
            raise UsageError(f"{field}: cannot read {location}: {type(exc).__name__}: {exc}") from None
    return fetch(location, base_dir, field).fingerprint


def object_version(info: Mapping[str, Any]) -> str | None:
    """An object's VersionId (S3, when the bucket keeps versions) or generation (GCS, always)."""
    version = info.get("VersionId") or info.get("generation")
    return None if version is None else str(version)


def object_tag(info: Mapping[str, Any]) -> str:
    """What changes when an object is rewritten: its version, else its ETag."""
    return object_version(info) or str(info.get("ETag") or info.get("etag") or "").strip('"')


def _object_fingerprint(info: Mapping[str, Any], location: str) -> Fingerprint:
    if info.get("type") == "directory":
        raise FileNotFoundError(location)
    return Fingerprint(location, "version" if object_version(info) else "etag", object_tag(info), info.get("size"))


def cache_key(fingerprints: Mapping[str, Fingerprint]) -> str:
    """One string for every file a step reads (`field=kind:value;...`): the part of a cache key that
    changes when the data does, whatever the spec says."""
    return ";".join(f"{field}={found.key}" for field, found in sorted(fingerprints.items()))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
