"""The one feature implementation, used by the pipeline and by the HTTP service.

Both paths hand a polars frame of raw columns to `compute_features`; a test proves that the same
rows give identical values on both paths.
"""

from __future__ import annotations

import polars as pl

from lifecycle_assets.spec import DerivedFeatureSpec, FeatureSpec, ModelSpec

UNKNOWN_CATEGORY = "__unknown__"


def boolean_level(value: bool, feature: FeatureSpec) -> str:
    """The level a boolean value (Parquet bool, JSON true/false) stands for in a categorical
    column: the spec's level spelling `true`/`false` in any case (`True`, `TRUE`), else
    `True`/`False` as a CSV writes them. The one place where case is looked past: a boolean has
    no spelling of its own."""
    text = "True" if value else "False"
    for level in feature.categories or ():
        if level.lower() == text.lower():
            return level
    return text


def _derived_expression(derived: DerivedFeatureSpec) -> pl.Expr:
    first = pl.col(derived.inputs[0]).cast(pl.Float64)
    if derived.op == "log1p":
        return first.clip(lower_bound=0).log1p().alias(derived.name)
    second = pl.col(derived.inputs[1]).cast(pl.Float64)
    if derived.op == "difference":
        return (first - second).alias(derived.name)
    # A ratio over zero or a missing denominator is unknown, not infinite.
    return (pl.when(second.is_null() | (second == 0)).then(None).otherwise(first / second)).alias(
        derived.name
    )


def _categorical_expression(spec: ModelSpec, name: str) -> pl.Expr:
    # Levels are compared exactly as the spec writes them: no trimming, no case folding.
    column = pl.col(name).cast(pl.String)
    levels = spec.feature(name).categories
    if levels is None:
        return column.alias(name)
    # Levels never seen in the spec map to one explicit bucket instead of failing at predict time.
    return (
        pl.when(column.is_in(list(levels)) | column.is_null())
        .then(column)
        .otherwise(pl.lit(UNKNOWN_CATEGORY))
        .alias(name)
    )


def feature_expressions(spec: ModelSpec) -> list[pl.Expr]:
    """Polars expressions producing the model's input columns, in `spec.feature_names` order."""
    raw_numeric = [name for name in spec.numeric_features if name in spec.input_columns]
    numeric = [pl.col(name).cast(pl.Float64).fill_nan(None).alias(name) for name in raw_numeric]
    derived = [_derived_expression(d) for d in spec.derived_features]
    categorical = [_categorical_expression(spec, name) for name in spec.categorical_features]
    return numeric + derived + categorical


def compute_features(raw: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """Turn raw rows into the model's input frame (one row per input row, same order)."""
    return raw.select(feature_expressions(spec))


def feature_table(raw: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """The pipeline's feature table: keys and labels beside the model inputs.

    Keeps the row id, event time, label and sensitive attribute so that splits, slices and
    lineage need no second join with the raw batch.
    """
    keys = [c for c in (spec.id_column, spec.timestamp, spec.target) if c is not None]
    sensitive = pl.col(spec.sensitive_attribute).cast(pl.String).alias("__sensitive__")
    return raw.select([pl.col(c) for c in keys] + [sensitive, *feature_expressions(spec)])
