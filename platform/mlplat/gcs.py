"""gs:// as an fsspec filesystem on google-cloud-storage, the client KServe's storage initializer uses.

Why not gcsfs: every gcsfs release that accepts the pinned fsspec needs google-cloud-storage >= 3.7,
and kserve-storage requires < 3. This adapter keeps one GCS client for the whole platform, so ingest,
publishing and KServe's model download read the same credentials: GOOGLE_APPLICATION_CREDENTIALS or
the metadata server (else anonymous access, as KServe falls back), and STORAGE_EMULATOR_HOST for an
emulator. Only what mlplat calls is implemented: info, ls/find, cat_file, open for reading,
pipe_file, put_file and rm_file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fsspec.spec import AbstractFileSystem


class GCSFileSystem(AbstractFileSystem):
    protocol = ("gs", "gcs")
    root_marker = ""

    def __init__(self, **storage_options: Any) -> None:
        super().__init__(**storage_options)
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage

        try:
            self._client = storage.Client()
        except DefaultCredentialsError:  # public buckets, as KServe's _download_gcs does
            self._client = storage.Client.create_anonymous_client()

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        bucket, _, key = path.partition("/")
        return bucket, key.rstrip("/")

    @staticmethod
    def _file_info(bucket: str, blob: Any) -> dict[str, Any]:
        return {"name": f"{bucket}/{blob.name}", "type": "file", "size": blob.size, "etag": blob.etag,
                "generation": blob.generation, "md5Hash": blob.md5_hash}

    def _blobs(self, path: str, delimiter: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
        """Objects under `path/` (all of them, or one level with a delimiter) and the sub-prefixes."""
        bucket, key = self._split(self._strip_protocol(path))
        with _translated(path):
            pages = self._client.list_blobs(bucket, prefix=f"{key}/" if key else "", delimiter=delimiter)
            files = [self._file_info(bucket, blob) for blob in pages if not blob.name.endswith("/")]
            prefixes = sorted(f"{bucket}/{prefix.rstrip('/')}" for prefix in pages.prefixes)
        return files, prefixes

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        bucket, key = self._split(path)
        with _translated(path):
            blob = self._client.bucket(bucket).get_blob(key) if key else None
            if blob is not None:
                return self._file_info(bucket, blob)
            if not key and self._client.lookup_bucket(bucket) is not None:
                return {"name": bucket, "type": "directory", "size": 0}
            if key and next(iter(self._client.list_blobs(bucket, prefix=f"{key}/", max_results=1)), None) is not None:
                return {"name": path, "type": "directory", "size": 0}
        raise FileNotFoundError(path)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        files, prefixes = self._blobs(path, delimiter="/")
        if not files and not prefixes:
            entries = [self.info(path)]  # a file lists as itself; a missing path raises
        else:
            entries = files + [{"name": prefix, "type": "directory", "size": 0} for prefix in prefixes]
        return entries if detail else [entry["name"] for entry in entries]

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        """Every object under `path` in one listing (fsspec's default walks one request per level)."""
        files, _ = self._blobs(path)
        if not files:  # a file finds itself; a missing path finds nothing, as fsspec's own find does
            try:
                files = [info for info in [self.info(path)] if info["type"] == "file"]
            except FileNotFoundError:
                files = []
        found = {entry["name"]: entry for entry in sorted(files, key=lambda entry: entry["name"])}
        return found if detail else list(found)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        bucket, key = self._split(path)
        with _translated(path):
            # GCS ranges are inclusive of `end`; fsspec's are not
            data: bytes = self._client.bucket(bucket).blob(key).download_as_bytes(
                start=start, end=None if end is None else end - 1)
        return data

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> io.BytesIO:
        if mode != "rb":
            raise NotImplementedError(f"gs:// opens for reading only; write with pipe_file or put_file ({path})")
        return io.BytesIO(self.cat_file(path))

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        bucket, key = self._split(path)
        with _translated(path):
            self._client.bucket(bucket).blob(key).upload_from_string(value)  # one request: old object or new

    def put_file(self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite", **kwargs: Any) -> None:
        rpath = self._strip_protocol(rpath)
        bucket, key = self._split(rpath)
        with _translated(rpath):
            self._client.bucket(bucket).blob(key).upload_from_filename(lpath)

    def rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        bucket, key = self._split(path)
        with _translated(path):
            self._client.bucket(bucket).blob(key).delete()


@contextmanager
def _translated(path: str) -> Iterator[None]:
    """google.api_core errors as the builtin ones fsspec callers catch (404, 403)."""
    from google.api_core import exceptions

    try:
        yield
    except exceptions.NotFound:
        raise FileNotFoundError(path) from None
    except (exceptions.Forbidden, exceptions.Unauthorized) as exc:
        raise PermissionError(f"{path}: {exc}") from None
