"""The gate a compiled model passes before it may serve: it must equal the pipeline.

Compared on the evaluation rows and on generated edge cases made from them (each feature
missing, at its extremes, every known level, unknown levels, random mixtures of those): the
largest absolute difference in score must be at most `MAX_ABS_DIFF` and no class decision may
differ. Both sides see the same feature frame, so any difference is the compiled model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.pipeline import Pipeline

from lifecycle_assets.compiled.model import CompiledModel
from lifecycle_assets.compiled.rows import frame_inputs
from lifecycle_assets.ml.decision import decide
from lifecycle_assets.ml.features import UNKNOWN_CATEGORY
from lifecycle_assets.ml.training import predict_scores
from lifecycle_assets.spec import ModelSpec

MAX_ABS_DIFF = 1e-9
# Beyond float32's range scikit-learn's trees refuse the input; these stay inside it.
_EXTREMES = (0.0, -1.0, 1e-12, 1e12, -1e12, 3.4e37)
_MAX_BASE_ROWS = 2_000


@dataclass(frozen=True)
class ParityResult:
    """The verdict on one compiled model; `reason` says why it failed, empty when it passed."""

    ok: bool
    rows: int
    max_abs_diff: float
    label_flips: int
    reason: str = ""


def _edge_cases(base: pl.DataFrame, spec: ModelSpec, seed: int) -> pl.DataFrame:
    """Variants of the first base row, one feature changed each, plus random mixtures."""
    rng = np.random.default_rng(seed)
    first = base.head(1)
    variants: list[pl.DataFrame] = []
    for name in spec.numeric_features:
        feature = spec.feature(name) if name in {f.name for f in spec.features} else None
        values: list[float | None] = [None, *_EXTREMES]
        if feature is not None:
            values += [v for v in (feature.min, feature.max) if v is not None]
        for value in values:
            variants.append(first.with_columns(pl.lit(value, dtype=pl.Float64).alias(name)))
    unknowns = [UNKNOWN_CATEGORY, "never-seen", ""]
    for name in spec.categorical_features:
        levels = list(spec.feature(name).categories or ())
        for value in [None, *levels, *unknowns, *(level.upper() for level in levels[:1])]:
            variants.append(first.with_columns(pl.lit(value, dtype=pl.String).alias(name)))
    mixed = base.sample(min(base.height, 200), with_replacement=True, seed=seed)
    columns = []
    for name in spec.numeric_features:
        column = mixed[name].cast(pl.Float64).to_numpy().copy()
        column[rng.random(mixed.height) < 0.3] = np.nan
        columns.append(pl.Series(name, column).fill_nan(None))
    for name in spec.categorical_features:
        levels = [*(spec.feature(name).categories or ()), *unknowns, None]
        picks = rng.integers(0, len(levels), mixed.height)
        columns.append(pl.Series(name, [levels[i] for i in picks], dtype=pl.String))
    variants.append(pl.DataFrame(columns).select(spec.feature_names))
    return pl.concat([v.select(spec.feature_names) for v in variants], how="vertical_relaxed")


def parity_rows(evaluation: pl.DataFrame, spec: ModelSpec, seed: int = 0) -> pl.DataFrame:
    """The evaluation rows (at most a few thousand) followed by the edge cases."""
    base = evaluation.select(
        [pl.col(n).cast(pl.Float64) for n in spec.numeric_features]
        + [pl.col(n).cast(pl.String) for n in spec.categorical_features]
    )
    if base.height > _MAX_BASE_ROWS:
        base = base.sample(_MAX_BASE_ROWS, seed=seed)
    if base.height == 0:
        raise ValueError("parity needs at least one evaluation row")
    return pl.concat([base, _edge_cases(base, spec, seed)], how="vertical_relaxed")


def check_parity(
    compiled: CompiledModel, pipeline: Pipeline, spec: ModelSpec, rows: pl.DataFrame
) -> ParityResult:
    """Compare the compiled model with the pipeline on `rows` (a feature frame)."""
    expected = predict_scores(pipeline, rows, spec)
    actual = compiled.score(*frame_inputs(rows, spec))
    if expected.shape != actual.shape:
        return ParityResult(False, rows.height, float("inf"), 0, "score shapes differ")
    both_nan = np.isnan(expected) & np.isnan(actual)
    diff = np.where(both_nan, 0.0, np.abs(expected - actual))
    worst = float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0
    flips = int((decide(expected, spec) != decide(actual, spec)).sum()) if spec.is_classifier else 0
    reasons = []
    if not worst <= MAX_ABS_DIFF:
        reasons.append(f"max abs diff {worst:.3g} > {MAX_ABS_DIFF:g}")
    if flips:
        reasons.append(f"{flips} label flips")
    return ParityResult(not reasons, rows.height, worst, flips, "; ".join(reasons))
