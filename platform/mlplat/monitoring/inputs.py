"""Who may feed the monitor, and how much: bearer-token checks, content types, body limits and a
strict JSON reader for the monitoring inputs (feedback, `monitor/evaluate`, the CloudEvents sink).

Those inputs change what the monitor reports (labels move live accuracy and the gap, events fill
the drift window), so they are closed unless configured: with a token, every input needs
`Authorization: Bearer <token>` (else 401); without one they answer 403 unless the operator
explicitly opened them (`--insecure-monitoring-inputs`, for a trusted network only).
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat.errors import Forbidden, InvalidInput, PayloadTooLarge, Unauthorized, UnsupportedMediaType, UsageError

if TYPE_CHECKING:
    from fastapi import Request

DEFAULT_MAX_BODY_BYTES = 1 << 20  # feedback for ~20k ids, or a logged request of ~10k rows x 10 features
JSON_CONTENT_TYPES = ("application/json",)
EVENT_CONTENT_TYPES = ("application/json", "application/cloudevents+json")
INSECURE_FLAG = "--insecure-monitoring-inputs"


@dataclass(frozen=True)
class InputPolicy:
    """The token monitoring inputs need (None: none configured) and the largest body they take."""

    token: str | None = None
    insecure: bool = False  # with no token: accept inputs from anyone instead of refusing them
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_options(cls, token_file: Path | None, insecure: bool,
                     max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> InputPolicy:
        """The policy `--token-file` / `--insecure-monitoring-inputs` ask for; a bad token file is a UsageError."""
        if token_file is not None and insecure:
            raise UsageError(f"--token-file and {INSECURE_FLAG} exclude each other: a token closes the inputs")
        return cls(read_token(token_file) if token_file is not None else None, insecure, max_body_bytes)

    def authorize(self, headers: Mapping[str, str]) -> None:
        """Raise Forbidden (no token configured) or Unauthorized (wrong or missing bearer token)."""
        if self.token is None:
            if self.insecure:
                return
            raise Forbidden("monitoring inputs are closed: start the server with --token-file FILE and send "
                            f"'Authorization: Bearer <token>' (or, on a trusted network only, {INSECURE_FLAG})")
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise Unauthorized("missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                               "with the token of the server's --token-file")

    async def read_body(self, request: Request, content_types: tuple[str, ...]) -> bytes:
        """The request body, after the token, its content type (415) and its size (413) are checked."""
        self.authorize(request.headers)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in content_types:
            raise UnsupportedMediaType(f"content type {content_type!r} is not supported: send {' or '.join(content_types)}")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {self.max_body_bytes}-byte limit")
        body = bytearray()
        async for chunk in request.stream():  # a chunked upload is cut off at the limit, not read to the end
            body += chunk
            if len(body) > self.max_body_bytes:
                raise PayloadTooLarge(f"request body exceeds the {self.max_body_bytes}-byte limit")
        return bytes(body)


def read_token(path: Path) -> str:
    """The bearer token in `path` (a mounted Kubernetes Secret key, or a local file), stripped."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file {path}: cannot read it: {exc}") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise UsageError(f"--token-file {path}: expected one token of at least 16 characters without spaces "
                         "(e.g. `openssl rand -hex 32`)")
    return token


def parse_json(body: bytes, where: str = "body") -> Any:
    """Strict JSON: invalid JSON and duplicate object keys are a 400. NaN/Infinity literals are read as
    floats, so the validation after it names the field that holds one."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise InvalidInput(f"{where}: duplicate JSON key {key[:100]!r}")
            seen[key] = value
        return seen

    try:
        return json.loads(body or b"null", object_pairs_hook=unique, parse_constant=float)
    except ValueError as exc:  # invalid JSON or UTF-8, or an integer too long to read
        raise InvalidInput(f"{where}: invalid JSON ({str(getattr(exc, 'msg', exc))[:200]})") from None
    except RecursionError:
        raise InvalidInput(f"{where}: JSON nested too deeply") from None


def is_finite_number(value: Any) -> bool:
    """An int or float (never a bool) that is finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
