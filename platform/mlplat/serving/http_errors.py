"""The one exception handler both HTTP apps register (the model server and the `mlplat monitor`
service): an `MlplatError` answers with `errors.http_status(exc)` and a `{"error": message}` body.

KServe's own errors (kserve.errors.InvalidInput, ModelNotFound, ...) keep KServe's handlers."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request, Response

from mlplat.errors import MlplatError, http_status


async def error_response(request: Request, exc: Exception) -> Response:
    return Response(orjson.dumps({"error": str(exc)}), status_code=http_status(exc), media_type="application/json")


def add_error_handler(app: FastAPI) -> None:
    app.add_exception_handler(MlplatError, error_response)
