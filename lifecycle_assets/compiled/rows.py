"""The compiled model's inputs, from validated records or from a feature frame.

`RowEncoder` mirrors `ml.features.compute_features` value by value in plain Python, so one
request costs a few microseconds instead of building polars expressions and frames. The polars
code stays the one definition (batches, training, profiles); a test feeds both the same
generated records and requires identical values. Categorical levels are compared exactly as
written (the shared contract): anything else is `__unknown__`; booleans are levels too,
spelled as polars casts them ("true", "false").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from lifecycle_assets.ml.features import UNKNOWN_CATEGORY
from lifecycle_assets.spec import DerivedFeatureSpec, ModelSpec

NAN = float("nan")
Inputs = tuple[np.ndarray, list[list[str | None]]]


def _number(value: Any) -> float | None:
    """A raw numeric value as the feature code casts it: float, with NaN as missing."""
    if value is None:
        return None
    number = float(value)
    return None if number != number else number


def _derived(derived: DerivedFeatureSpec, record: dict[str, Any]) -> float | None:
    first = _number(record.get(derived.inputs[0]))
    if derived.op == "log1p":
        return None if first is None else math.log1p(max(first, 0.0))
    second = _number(record.get(derived.inputs[1]))
    if derived.op == "difference":
        return None if first is None or second is None else first - second
    # ratio: over zero or a missing denominator is unknown, not infinite
    if second is None or second == 0 or first is None:
        return None
    return first / second


def _level(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


class RowEncoder:
    """Validated records -> (numeric matrix, categorical values) in the model's input order."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        inputs = set(spec.input_columns)
        self.raw_numeric = [name for name in spec.numeric_features if name in inputs]
        self.derived = list(spec.derived_features)
        self.categorical = [
            (name, None if levels is None else frozenset(levels))
            for name in spec.categorical_features
            for levels in [spec.feature(name).categories]
        ]

    def numeric_row(self, record: dict[str, Any]) -> list[float]:
        row = [_number(record.get(name)) for name in self.raw_numeric]
        row += [_derived(derived, record) for derived in self.derived]
        return [NAN if value is None else value for value in row]

    def categorical_value(self, levels: frozenset[str] | None, value: Any) -> str | None:
        level = _level(value)
        if level is None or levels is None or level in levels:
            return level
        return UNKNOWN_CATEGORY

    def encode(self, records: Sequence[dict[str, Any]]) -> Inputs:
        numeric = np.array([self.numeric_row(r) for r in records], dtype=np.float64)
        numeric = numeric.reshape(len(records), len(self.raw_numeric) + len(self.derived))
        categorical = [
            [self.categorical_value(levels, r.get(name)) for r in records]
            for name, levels in self.categorical
        ]
        return numeric, categorical


def frame_inputs(features: pl.DataFrame, spec: ModelSpec) -> Inputs:
    """The same inputs from a feature frame (`compute_features` output or a training table)."""
    numeric = (
        features.select(pl.col(name).cast(pl.Float64) for name in spec.numeric_features)
        .to_numpy()
        .astype(np.float64, copy=False)
        .reshape(features.height, len(spec.numeric_features))
    )
    categorical = [features[name].cast(pl.String).to_list() for name in spec.categorical_features]
    return numeric, categorical
