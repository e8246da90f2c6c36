"""The one rule for feedback bodies: which rows a label is for, and what a label is.

    {"request_id": "ID", "labels": [...]}        one label per row of that request (or one label)
    {"ids": ["ID/0", "ID/1"], "labels": [...]}   one label per id, as the server returned them

A classifier's `labels` are class names (strings, as in model.json and the `predictions` the server
returns); its class indices go only in the explicitly named `label_indices`. A regression model's
`labels` are finite numbers. Anything else (a bool, `1.0` or `2` for a classifier, NaN, infinity)
is a 422 naming the field, so a label can never be read as something its sender did not mean.
"""

from __future__ import annotations

from typing import Any

from mlplat.errors import BadFeedback
from mlplat.monitoring.inputs import is_finite_number
from mlplat.monitoring.window import row_key

MAX_ID_CHARS = 256  # the ids the server returns are far shorter; longer ones are no ids of ours
FIELDS = ("request_id", "ids", "labels", "label_indices")


def parse_feedback(payload: Any, classes: list[str] | None) -> tuple[list[str], list[int] | list[float]]:
    """(row keys, labels) of a feedback body: class indices for a classifier (`classes`), floats for a
    regression model (`classes` None). Raises BadFeedback naming the field."""
    if not isinstance(payload, dict):
        raise BadFeedback("body: expected a JSON object with request_id or ids, and labels")
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise BadFeedback(f"body: unknown field(s) {[k[:50] for k in unknown[:5]]}; expected {list(FIELDS)}")
    if ("request_id" in payload) == ("ids" in payload):
        raise BadFeedback("body: give exactly one of request_id or ids")
    if ("labels" in payload) == ("label_indices" in payload):
        raise BadFeedback("body: give exactly one of labels (class names, or numbers for regression) or label_indices")
    field = "labels" if "labels" in payload else "label_indices"
    if field == "label_indices" and classes is None:
        raise BadFeedback("label_indices: a regression model takes numeric labels in `labels`")
    values = payload[field]
    if "ids" in payload:
        ids = payload["ids"]
        if not isinstance(ids, list):
            raise BadFeedback("ids: expected a list of request ids")
        keys = [_id(value, f"ids[{i}]") for i, value in enumerate(ids)]
        if not isinstance(values, list) or len(values) != len(keys):
            raise BadFeedback(f"{field}: labels must be a list as long as ids ({len(keys)})")
    else:
        request_id = _id(payload["request_id"], "request_id")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise BadFeedback(f"{field}: expected at least one label")
        keys = [row_key(request_id, i, len(values)) for i in range(len(values))]
    if classes is None:
        return keys, [_number(v, f"labels[{i}]") for i, v in enumerate(values)]
    read = _class_name if field == "labels" else _class_index
    return keys, [read(v, f"{field}[{i}]", classes) for i, v in enumerate(values)]


def _id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise BadFeedback(f"{where}: expected a request id, a non-empty string of at most {MAX_ID_CHARS} characters")
    return value


def _shown(classes: list[str]) -> str:
    return str(classes if len(classes) <= 20 else [*classes[:20], "..."])


def _class_name(value: Any, where: str, classes: list[str]) -> int:
    if isinstance(value, str) and value in classes:
        return classes.index(value)
    if isinstance(value, (bool, int, float)):
        raise BadFeedback(f"{where}: {value!r} is not a class name; labels are class names (one of {_shown(classes)}), "
                          f"class indices go in label_indices")
    raise BadFeedback(f"{where}: {str(value)[:100]!r} is not a class of this model; expected one of {_shown(classes)}")


def _class_index(value: Any, where: str, classes: list[str]) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
        return value
    raise BadFeedback(f"{where}: {str(value)[:100]!r} is not a class index 0..{len(classes) - 1} (an integer)")


def _number(value: Any, where: str) -> float:
    if not is_finite_number(value):
        raise BadFeedback(f"{where}: {str(value)[:100]!r} is not a finite number")
    return float(value)
