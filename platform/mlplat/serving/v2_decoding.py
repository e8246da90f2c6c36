"""Strict checks of a request body before KServe decodes it, so a malformed body is a 400 naming the
tensor instead of a 500 from KServe's decoder or a silent 200 on wrapped or truncated values (issue 14).

Accepted V2 datatypes (the model's input is FP32; others are converted):
FP32, FP64, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64 in JSON or binary, FP16 in binary only.
Integer types take JSON integers in their range (an integral float such as 3.0 too), never 0.7 or 300 for UINT8.
In a binary body each tensor's `binary_data_size` must be exactly its shape times its item size, and the
sizes must add up to the bytes after the JSON header: no missing and no trailing bytes.
Duplicate JSON object keys are refused in every body (V1 and V2): which one wins is up to the parser.
BYTES come as JSON strings, or (encoded images, tritonclient's binary_data=True) in a binary body as
4-byte little-endian lengths each followed by that many bytes, exactly `shape` elements filling `binary_data_size`.

A V1 body that is no JSON is a 400 worded as KServe's; a V2 one is left to KServe, whose 400 names the parse error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import orjson

from mlplat.errors import InvalidInput

ITEM_BYTES = {"FP16": 2, "FP32": 4, "FP64": 8, "INT8": 1, "INT16": 2, "INT32": 4, "INT64": 8,
              "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8}
INTEGER_RANGES = {f"INT{b}": (-(2 ** (b - 1)), 2 ** (b - 1) - 1) for b in (8, 16, 32, 64)} | {
    f"UINT{b}": (0, 2 ** b - 1) for b in (8, 16, 32, 64)}
ACCEPTED = ", ".join(ITEM_BYTES) + ", BYTES (categorical features, JSON strings)"


class _NotJson(Exception):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise InvalidInput(reason="duplicate_key", message=f"duplicate JSON key {key!r}: send each key once")
        seen.add(key)
    return dict(pairs)


def _refuse_constant(literal: str) -> Any:
    raise InvalidInput(reason="non_finite", message=f"request body is not JSON: JSON has no NaN/Infinity (got {literal}); "
                                                    f"send finite numbers")


def parse_json(body: bytes, constants: bool = True) -> Any:
    """The JSON document, with duplicate keys refused (and NaN/Infinity literals unless `constants`: KServe's V2
    decoder reads them, and the schema names the tensor and feature); _NotJson if it is no JSON."""
    try:
        if constants:
            return json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
        return json.loads(body, object_pairs_hook=_refuse_duplicate_keys, parse_constant=_refuse_constant)
    except InvalidInput:
        raise
    except (ValueError, RecursionError):
        raise _NotJson() from None


def v1_document(body: bytes) -> Any:
    """A V1 body's JSON document; duplicate keys, NaN/Infinity and a body that is no JSON are a 400 (the
    latter worded as KServe words it); the rest is the schema's to check."""
    try:
        return parse_json(body, constants=False)
    except _NotJson:
        try:
            orjson.loads(body)
            problem = "not JSON"
        except orjson.JSONDecodeError as exc:
            problem = str(exc)
        raise InvalidInput(reason="malformed", message=f"Unrecognized request format: {problem}") from None


def check_v2_body(body: bytes, header_length: bytes | None, max_values: int) -> None:
    """A V2 infer body, JSON or binary (`header_length`: the Inference-Header-Content-Length header)."""
    if header_length is None:
        try:
            document = parse_json(body)
        except _NotJson:
            return
        _check_inputs(document, None, max_values)
        return
    text = header_length.decode("latin-1").strip()
    if not text.isdigit() or int(text) > len(body):
        raise InvalidInput(reason="binary", message=f"Inference-Header-Content-Length {text[:20]!r} is not a byte count "
                                                    f"within the {len(body)}-byte body")
    json_length = int(text)
    try:
        document = parse_json(body[:json_length])
    except _NotJson:
        raise InvalidInput(reason="binary", message=f"the first {json_length} bytes (Inference-Header-Content-Length) "
                                                    f"are not a JSON header") from None
    _check_inputs(document, body[json_length:], max_values)


def _check_inputs(document: Any, binary_body: bytes | None, max_values: int) -> None:
    binary = binary_body is not None
    binary_bytes = len(binary_body) if binary_body is not None else None
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, list):
        if binary:  # KServe's binary decoder indexes it unchecked
            raise InvalidInput(reason="malformed", message="the JSON header needs an 'inputs' list")
        return  # FastAPI's schema check answers 422 naming the field
    declared = 0
    for position, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidInput(reason="malformed", message=f"inputs[{position}] must be an object")
        name = tensor.get("name")
        where = f"input {name!r}" if isinstance(name, str) else f"inputs[{position}]"
        datatype, shape = tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list):
            raise InvalidInput(reason="malformed", message=f"{where} needs a string 'name', a string 'datatype' "
                                                           f"and a 'shape' list")
        if datatype == "BYTES":  # categorical features or encoded images; the schema checks which
            declared += _check_bytes(tensor, shape, where, binary_body, declared)
            continue
        if datatype not in ITEM_BYTES:
            raise InvalidInput(reason="dtype", message=f"input {name!r}: datatype {datatype} is not numeric "
                                                       f"(accepted: {ACCEPTED})")
        if not all(type(d) is int and d >= 0 for d in shape):
            raise InvalidInput(reason="shape", message=f"{where}: shape {shape!r} must be non-negative integers")
        values = math.prod(shape)
        if values > max_values:
            raise InvalidInput(reason="too_many_values", message=f"{where}: shape {shape} holds {values} values; "
                                                                 f"the limit per request is {max_values}")
        parameters = tensor.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if "data" in tensor and tensor["data"] is not None:
            if size is not None:
                raise InvalidInput(reason="binary", message=f"{where}: both 'data' and binary_data_size")
            _check_data(tensor["data"], datatype, shape, values, where)
        elif size is not None:
            if not binary:
                raise InvalidInput(reason="binary", message=f"{where}: binary_data_size without a binary body "
                                                            f"(Inference-Header-Content-Length header)")
            if type(size) is not int or size != values * ITEM_BYTES[datatype]:
                raise InvalidInput(reason="binary", message=f"{where}: binary_data_size {size!r} but shape {shape} of "
                                                            f"{datatype} takes {values * ITEM_BYTES[datatype]} bytes")
            declared += size
        elif binary:
            raise InvalidInput(reason="malformed", message=f"{where}: neither 'data' nor binary_data_size")
        if datatype == "FP16" and not binary:
            raise InvalidInput(reason="dtype", message=f"{where}: FP16 comes in a binary body only")
    if binary and declared != binary_bytes:
        kind = "trailing" if binary_bytes > declared else "missing"  # type: ignore[operator]
        raise InvalidInput(reason="binary", message=f"binary body has {binary_bytes} bytes after the JSON header, the "
                                                    f"inputs declare {declared} ({kind} bytes)")


def _check_bytes(tensor: dict[str, Any], shape: list[Any], where: str, binary_body: bytes | None, offset: int) -> int:
    """A BYTES tensor's strings, or its binary segment at `offset`; the binary bytes it takes."""
    parameters = tensor.get("parameters") or {}
    data = tensor.get("data")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(reason="shape", message=f"{where}: shape {shape!r} must be non-negative integers")
    if isinstance(parameters, dict) and "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if binary_body is None or data is not None:
            raise InvalidInput(reason="binary", message=f"{where}: binary_data_size needs a binary body "
                                                        f"(Inference-Header-Content-Length header) and no 'data'")
        if type(size) is not int or size < 0 or offset + size > len(binary_body):
            raise InvalidInput(reason="binary", message=f"{where}: binary_data_size {size!r} does not fit the "
                                                        f"{len(binary_body)} binary bytes")
        _check_length_prefixed(binary_body[offset:offset + size], math.prod(shape), where)
        return int(size)
    flat = list(flat_values(data)) if isinstance(data, list) else [data]
    if len(flat) != math.prod(shape):
        raise InvalidInput(reason="shape", message=f"{where}: data does not match shape {shape}: {len(flat)} values")
    bad = next((i for i, v in enumerate(flat) if v is not None and type(v) is not str), None)
    if bad is not None:
        raise InvalidInput(reason="dtype", message=f"{where}: BYTES values must be strings (or null), got "
                                                   f"{str(flat[bad])[:40]!r} at [{bad}]")
    return 0


def _check_length_prefixed(segment: bytes, count: int, where: str) -> None:
    """Exactly `count` elements, each a 4-byte little-endian length and that many bytes (KServe's decoder trusts it)."""
    offset = 0
    for index in range(count):
        if offset + 4 > len(segment):
            raise InvalidInput(reason="binary", message=f"{where}: binary BYTES end before element [{index}] "
                                                        f"of {count}")
        length = int.from_bytes(segment[offset:offset + 4], "little")
        offset += 4 + length
        if offset > len(segment):
            raise InvalidInput(reason="binary", message=f"{where}: element [{index}] declares {length} bytes, "
                                                        f"more than the binary data holds")
    if offset != len(segment):
        raise InvalidInput(reason="binary", message=f"{where}: {len(segment) - offset} bytes after the {count} "
                                                    f"elements of shape")


def _check_data(data: Any, datatype: str, shape: list[int], values: int, where: str) -> None:
    flat = list(flat_values(data)) if isinstance(data, list) else [data]
    if len(flat) != values:
        raise InvalidInput(reason="shape", message=f"{where}: data does not match shape {shape}: {len(flat)} values, "
                                                   f"the shape holds {values}")
    bounds = INTEGER_RANGES.get(datatype)
    for index, value in enumerate(flat):
        if value is None:
            continue  # a null in JSON data: the model's schema imputes it, or refuses it naming the feature
        if type(value) not in (int, float):
            got = "null" if value is None else {str: "a string", bool: "a boolean", dict: "an object"}.get(
                type(value), type(value).__name__)
            raise InvalidInput(reason="null" if value is None else "dtype",
                               message=f"{where}: expected numbers, got {got} {str(value)[:40]!r} at [{index}]")
        if bounds is not None:
            if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
                raise InvalidInput(reason="dtype", message=f"{where}: {datatype} value {value!r} at [{index}] "
                                                           f"is not an integer")
            if not bounds[0] <= value <= bounds[1]:
                raise InvalidInput(reason="out_of_range", message=f"{where}: {datatype} value {value!r} at [{index}] "
                                                                  f"is outside [{bounds[0]}, {bounds[1]}]")


def flat_values(data: list[Any]) -> Iterator[Any]:
    """The leaves of a nested JSON list (a V2 tensor's `data`), in row-major order."""
    for v in data:
        if isinstance(v, list):
            yield from flat_values(v)
        else:
            yield v


def inline_binary_bytes(body: bytes, json_length: int) -> tuple[bytes, int | None]:
    """A checked binary V2 body with its BYTES tensors moved into the JSON header as base64 strings:
    (new body, new header length, None when no binary data is left).

    KServe's binary decoder turns every BYTES element into a UTF-8 string, so an encoded image (tritonclient's
    `binary_data=True`) would end in its 500; as base64 JSON strings it reaches the model intact."""
    import base64
    import json as stdlib_json

    document = parse_json(body[:json_length])
    binary, offset, kept = body[json_length:], 0, []
    for tensor in document["inputs"]:
        parameters = tensor.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        segment = binary[offset:offset + size]
        offset += size
        if tensor["datatype"] != "BYTES":
            kept.append(segment)
            continue
        values, at = [], 0
        while at < len(segment):
            length = int.from_bytes(segment[at:at + 4], "little")
            values.append(base64.b64encode(segment[at + 4:at + 4 + length]).decode())
            at += 4 + length
        del parameters["binary_data_size"]
        tensor["data"] = values
    header = stdlib_json.dumps(document).encode()
    rest = b"".join(kept)
    return header + rest, (len(header) if rest else None)
