"""One rule for every JSON line the project writes: strict JSON, NaN and infinities as null.

Python's `json` writes `NaN`, `Infinity` and `-Infinity` by default, tokens no JSON parser has to
accept: one such value in a prediction log made every later read of that day fail. Anything
that writes JSON for other programs to read (log lines, reports such as `evaluation.json`, the
drift `latest.json`, the values the Dagster IO manager stores) goes through `dumps` (or `clean`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any


def clean(value: Any) -> Any:
    """`value` with every non-finite float (at any depth) replaced by None, numpy scalars and
    arrays turned into plain Python values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy here
        return clean(value.tolist())
    return value


def _plain(value: Any) -> Any:
    """What `json` cannot encode on its own: numpy values as Python, anything else as text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def dumps(
    value: Any,
    *,
    indent: int | None = None,
    sort_keys: bool = False,
    default: Callable[[Any], Any] = _plain,
) -> str:
    """Strict JSON text of `value` (on one line unless `indent`); non-finite floats become null.

    The common case (nothing to clean) costs one `json.dumps`: the value is only walked when
    the strict encoder refuses it.
    """
    if indent is None and not sort_keys and default is _plain:
        encode = _one_line  # every prediction log line: no encoder built per call
    else:
        options: dict[str, Any] = {"allow_nan": False, "sort_keys": sort_keys, "default": default}
        if indent is None:
            options["separators"] = (",", ":")
        else:
            options["indent"] = indent
        encode = json.JSONEncoder(**options).encode
    try:
        return encode(value)
    except ValueError:
        return encode(clean(value))


# `dumps`'s common form, built once (`json.dumps` with options builds an encoder on every call).
_one_line = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_plain).encode


def loads(text: str | bytes) -> Any:
    """Parse strict JSON: the non-standard `NaN` and `Infinity` tokens are refused."""
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")
