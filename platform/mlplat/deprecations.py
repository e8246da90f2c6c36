"""Renamed config keys: the old name keeps working for a while, read as the new one with a warning.

A model's `mode="before"` validator calls `renamed_keys`. The warning is a `RenamedKey`, a
DeprecationWarning the CLI prints as one line (Python hides DeprecationWarnings outside `__main__`);
giving both names is refused at the old key, so the error names the field to delete.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


class RenamedKey(DeprecationWarning):
    """A config key was given under its old name."""


def renamed_keys(data: Any, renames: Mapping[str, str], where: str, model: str) -> Any:
    """`data` with each old key of `renames` (old -> new) moved to its new name; `where` prefixes both names
    in the messages ("steps.", "params."), `model` names the model in a ValidationError."""
    if not isinstance(data, Mapping) or not any(old in data for old in renames):
        return data
    moved = dict(data)
    for old, new in renames.items():
        if old not in moved:
            continue
        if new in moved:
            message = f"the old name of {where}{new}; give only {where}{new}"
            raise ValidationError.from_exception_data(model, [InitErrorDetails(
                type=PydanticCustomError("renamed_key", message), loc=(old,), input=moved[old])])
        warnings.warn(f"{where}{old} is deprecated: it is read as {where}{new}; rename it", RenamedKey, stacklevel=2)
        moved[new] = moved.pop(old)
    return moved
