"""What one service process serves right now: champion, optional canary and shadow.

A `ModelSet` is immutable and replaced as a whole on every swap, so a batch that took a reference
at its start is scored, answered and logged by exactly the models it started with, whatever the
registry watcher publishes meanwhile.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from lifecycle_assets.compiled.rows import frame_inputs
from lifecycle_assets.ml.features import compute_features
from lifecycle_assets.serving.model_source import ServedModel
from lifecycle_assets.spec import ModelSpec

CHAMPION, CANARY, SHADOW = "champion", "canary", "shadow"
ROLES = (CHAMPION, CANARY, SHADOW)


@dataclass(frozen=True)
class ModelSet:
    """The models of one moment; `canary_weight` is the share of records the canary answers."""

    champion: ServedModel
    canary: ServedModel | None = None
    canary_weight: float = 0.0
    shadow: ServedModel | None = None

    def get(self, role: str) -> ServedModel | None:
        return getattr(self, role)

    def replace(self, **changes: Any) -> ModelSet:
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """Per role: the version served and when it was loaded (None when the role is empty)."""
        described: dict[str, Any] = {}
        for role in ROLES:
            served = self.get(role)
            described[role] = (
                None
                if served is None
                else {
                    "version": served.ref.version,
                    "loaded_at": served.loaded_at,
                    **served.describe_scorer(),
                }
            )
        if described[CANARY] is not None:
            described[CANARY]["weight"] = self.canary_weight
        return described


def score(served: ServedModel, frame: pl.DataFrame) -> np.ndarray:
    """Scores for raw rows (probabilities or predicted values): the pipeline's own feature
    code, then the compiled model when it has one with proven parity, else the pipeline."""
    loaded = served.loaded
    features = compute_features(frame, loaded.spec)
    if served.compiled is not None:
        return served.compiled.score(*frame_inputs(features, loaded.spec))
    # Here, not at import: a compiled model needs no scikit-learn (a second of start-up).
    from lifecycle_assets.ml.training import predict_scores

    return predict_scores(loaded.pipeline, features, loaded.spec)


def score_records(
    served: ServedModel,
    records: Sequence[dict[str, Any]],
    frame: Callable[[], pl.DataFrame],
) -> np.ndarray:
    """Scores for validated records: straight from the records into the compiled model (no
    data frame), or through `score` on their frame (`frame()`) when scikit-learn serves."""
    if served.compiled is not None:
        return served.compiled.score(*served.row_encoder.encode(records))
    return score(served, frame())


def smoke_frame(spec: ModelSpec) -> pl.DataFrame:
    """Three raw rows built from the spec: the low end, the high end, and unseen levels/nulls."""
    columns: dict[str, pl.Series] = {}
    for feature in spec.features:
        if feature.type == "numeric":
            low = 0.0 if feature.min is None else feature.min
            high = low + 1.0 if feature.max is None else feature.max
            third = None if feature.nullable else (low + high) / 2
            columns[feature.name] = pl.Series(feature.name, [low, high, third], dtype=pl.Float64)
        else:
            levels = list(feature.categories or ("a",))
            third = None if feature.nullable else "__never_seen_level__"
            values = [levels[0], levels[-1], third]
            columns[feature.name] = pl.Series(feature.name, values, dtype=pl.String)
    return pl.DataFrame(columns)


def smoke_test(served: ServedModel, serving_spec: ModelSpec) -> None:
    """Raise unless `served` answers rows valid for the spec requests are validated against."""
    spec = served.loaded.spec
    missing = sorted(set(spec.input_columns) - {f.name for f in serving_spec.features})
    if missing:
        raise ValueError(f"needs columns the served spec does not accept: {missing}")
    if spec.task != serving_spec.task:
        raise ValueError(f"is a {spec.task} model; the service serves a {serving_spec.task}")
    scores = score(served, smoke_frame(serving_spec))
    if scores.shape != (3,):
        raise ValueError(f"smoke prediction returned shape {scores.shape}, expected (3,)")
    if spec.is_classifier:
        bad = [p for p in scores.tolist() if not (math.isfinite(p) and 0.0 <= p <= 1.0)]
        if bad:
            raise ValueError(f"smoke prediction returned probabilities outside [0, 1]: {bad}")
    elif not np.isfinite(scores).all():
        raise ValueError(f"smoke prediction returned non-finite values: {scores.tolist()}")
