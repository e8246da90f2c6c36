"""A GCS-compatible server for tests: gcp-storage-emulator on 127.0.0.1, reached through
STORAGE_EMULATOR_HOST, the variable google-cloud-storage (and so KServe's storage code) reads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def gcs_emulator(*buckets: str) -> Iterator[Any]:
    """Start the emulator on a free port with `buckets` made; yields a google-cloud-storage client."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    host, port = server._api._httpd.server_address  # port 0: the one the OS chose
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://{host}:{port}"
    try:
        from google.cloud import storage

        client = storage.Client()
        for bucket in buckets:
            client.create_bucket(bucket)
        yield client
    finally:
        if saved is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = saved
        server.stop()
