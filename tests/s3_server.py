"""An S3-compatible server for tests: moto's standalone server on 127.0.0.1, reached through the same
environment variables KServe's storage initializer reads (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def moto_s3() -> Iterator[str]:
    """Start the server on a free port, point the S3 env vars at it; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in (*S3_ENV, "AWS_ENDPOINT_URL", "S3_ENDPOINT", "S3_USE_HTTPS")}
    os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
    try:
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")


@contextmanager
def moto_bucket(bucket: str) -> Iterator[Any]:
    """`moto_s3` with one bucket made; yields a boto3 client for it."""
    with moto_s3() as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket=bucket)
        yield client


def mlplat(*args: str) -> int:
    """The real `mlplat` entry point in this process (errors become exit codes there)."""
    import sys

    from mlplat.cli import main

    saved, sys.argv = sys.argv, ["mlplat", *args]
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved
    return 0
