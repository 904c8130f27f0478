"""pandera (polars) schemas derived from the spec, and a validation report a person can read.

Validation never raises on bad data: it returns a `ValidationReport` naming the failing columns,
checks and row indices, so that the caller can quarantine the batch and a check can explain why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.engines.polars_engine import DateTime
from pandera.errors import SchemaError, SchemaErrors

from lifecycle_assets.data.event_time import parse_text
from lifecycle_assets.ml.features import UNKNOWN_CATEGORY, boolean_level
from lifecycle_assets.spec import FeatureSpec, ModelSpec

MAX_REPORTED_FAILURES = 50


def _range_checks(feature: FeatureSpec) -> list[pa.Check]:
    checks = []
    if feature.min is not None:
        checks.append(pa.Check.ge(feature.min))
    if feature.max is not None:
        checks.append(pa.Check.le(feature.max))
    return checks


def _finite_or_null(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).is_finite().fill_null(True))


def _raw_column(feature: FeatureSpec) -> pa.Column:
    if feature.type == "numeric":
        checks = [*_range_checks(feature), pa.Check(_finite_or_null, name="finite")]
        return pa.Column(pl.Float64, checks=checks, nullable=feature.nullable)
    checks = [pa.Check.isin(list(feature.categories))] if feature.categories else []
    if feature.max_length is not None:
        checks.append(pa.Check.str_length(max_value=feature.max_length))
    return pa.Column(pl.String, checks=checks, nullable=feature.nullable)


def raw_schema(spec: ModelSpec) -> pa.DataFrameSchema:
    """What a raw batch must look like: typed columns, allowed ranges and levels, and a 0/1
    label (classifiers) or a finite number (regressors).

    Applied to the output of `normalize_raw`, which has already cast every column to its type.
    """
    columns: dict[str, pa.Column] = {f.name: _raw_column(f) for f in spec.features}
    if spec.is_classifier:
        columns[spec.target] = pa.Column(pl.Int64, checks=[pa.Check.isin([0, 1])])
    else:
        finite = pa.Check(_finite_or_null, name="finite")
        columns[spec.target] = pa.Column(pl.Float64, checks=[finite], nullable=False)
    columns[spec.timestamp] = pa.Column(DateTime(time_zone_agnostic=True), nullable=False)
    if spec.id_column:
        columns[spec.id_column] = pa.Column(pl.String, unique=True)
    return pa.DataFrameSchema(columns, name=f"{spec.name}_raw", strict=False)


def _target_dtype(spec: ModelSpec, column: str) -> pl.DataType:
    if column == spec.target:
        return pl.Int64() if spec.is_classifier else pl.Float64()
    if column == spec.timestamp:
        return pl.Datetime("us", "UTC")
    if column in spec.numeric_columns:
        return pl.Float64()
    return pl.String()


def _cast(series: pl.Series, dtype: pl.DataType, time_format: str | None = None) -> pl.Series:
    if dtype == pl.Datetime("us", "UTC"):
        if series.dtype == pl.String:
            # The reader's rule (ISO 8601 or the spec's format), never a format inferred from
            # the first value: a day's rows are typed exactly as they were dated.
            return pl.select(parse_text(pl.lit(series), time_format)).to_series()
        if isinstance(series.dtype, pl.Datetime):
            if series.dtype.time_zone is None:  # type: ignore[union-attr]
                return series.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
            return series.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if dtype == pl.Float64:
        return series.cast(pl.Float64, strict=False).fill_nan(None)
    return series.cast(dtype, strict=False)


def as_text(series: pl.Series, feature: FeatureSpec | None = None) -> pl.Series:
    """A column as the text a CSV holds: booleans as their level, whole floats without `.0`."""
    if series.dtype == pl.Boolean:
        true = boolean_level(True, feature) if feature else "True"
        false = boolean_level(False, feature) if feature else "False"
        return series.replace_strict({True: true, False: false}, return_dtype=pl.String)
    if series.dtype.is_float():
        whole = series.is_not_nan() & (series == series.round(0))
        return (
            pl.select(
                pl.when(whole)
                .then(series.cast(pl.Int64, strict=False).cast(pl.String))
                .otherwise(series.cast(pl.String))
            )
            .to_series()
            .alias(series.name)
        )
    return series.cast(pl.String)


def map_target(series: pl.Series, spec: ModelSpec) -> tuple[pl.Series, list[dict[str, Any]]]:
    """The target as 0/1 by the spec's `positive_label`, and a failure per row whose value is
    neither the positive nor the one negative value (a third class)."""
    levels = spec.label_levels
    assert levels is not None
    positive, negative = levels
    text = as_text(series)
    others = text.filter(text.is_not_null() & (text != positive))
    if negative is None:
        # The one other value is the negative; if there are several, the most frequent one.
        counts = others.value_counts(sort=True)
        negative = counts[series.name][0] if counts.height else None
    mapped = (
        pl.select(
            pl.when(text == positive)
            .then(pl.lit(1, pl.Int64))
            .when(text == negative)
            .then(pl.lit(0, pl.Int64))
            .otherwise(pl.lit(None, pl.Int64))
        )
        .to_series()
        .alias(series.name)
    )
    bad = text.is_not_null() & mapped.is_null()
    found = sorted(set(text.drop_nulls().unique().to_list()))
    check = f"binary target: {positive!r} is positive, {negative!r} negative; values found {found}"
    failures = [
        {"column": series.name, "check": check, "failure_case": text[i], "index": int(i)}
        for i in bad.arg_true().head(MAX_REPORTED_FAILURES).to_list()
    ]
    return mapped, failures


def normalize_raw(frame: pl.DataFrame, spec: ModelSpec) -> tuple[pl.DataFrame, list[dict]]:
    """Cast the spec's columns to their types; report every value that could not be cast.

    Done here rather than by pandera's coercion so that a bad value is reported with its column
    and row (pandera stops at the first column it cannot coerce).
    """
    failures: list[dict[str, Any]] = []
    columns = [*(f.name for f in spec.features), spec.target, spec.timestamp]
    if spec.id_column:
        columns.append(spec.id_column)
    casts = []
    for column in columns:
        if column not in frame.columns:
            continue
        if column == spec.target and spec.is_classifier and spec.label_levels is not None:
            cast, target_failures = map_target(frame[column], spec)
            failures.extend(target_failures)
            casts.append(cast)
            continue
        dtype = _target_dtype(spec, column)
        source = frame[column]
        if dtype == pl.String and column in {f.name for f in spec.features}:
            source = as_text(source, spec.feature(column))
        elif column == spec.target and source.dtype == pl.Boolean:
            source = source.cast(pl.Int64)
        cast = _cast(source, dtype, spec.timestamp_format)
        lost = frame[column].is_not_null() & cast.is_null()
        if frame[column].dtype.is_float():
            lost = lost & frame[column].is_not_nan()
        for index in lost.arg_true().head(MAX_REPORTED_FAILURES).to_list():
            failures.append(
                {
                    "column": column,
                    "check": f"dtype({dtype})",
                    "failure_case": str(frame[column][index]),
                    "index": int(index),
                }
            )
        casts.append(cast.alias(column))
    return frame.with_columns(casts), failures


def feature_schema(spec: ModelSpec) -> pa.DataFrameSchema:
    """What the model's input frame must look like: exact columns, types, no infinities."""
    columns: dict[str, pa.Column] = {}
    for name in spec.numeric_features:
        columns[name] = pa.Column(
            pl.Float64, checks=[pa.Check(_finite_or_null, name="finite")], nullable=True
        )
    for name in spec.categorical_features:
        levels = spec.feature(name).categories
        checks = [pa.Check.isin([*levels, UNKNOWN_CATEGORY])] if levels else []
        columns[name] = pa.Column(pl.String, checks=checks, nullable=True)
    return pa.DataFrameSchema(columns, name=f"{spec.name}_features", strict=False, ordered=False)


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one frame: which columns and rows failed which check."""

    schema: str
    rows: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    failure_count: int = 0

    @property
    def passed(self) -> bool:
        return self.failure_count == 0

    @property
    def failed_columns(self) -> list[str]:
        return sorted({str(f["column"]) for f in self.failures if f.get("column") is not None})

    @property
    def failed_rows(self) -> list[int]:
        return sorted({int(f["index"]) for f in self.failures if f.get("index") is not None})

    def summary(self) -> str:
        if self.passed:
            return f"{self.rows} rows pass {self.schema}"
        examples: dict[str, list[str]] = {}
        for f in self.failures:
            cases = examples.setdefault(f"{f['column']}: {f['check']}", [])
            case = f.get("failure_case")
            if case is not None and str(case) not in cases and len(cases) < 2:
                cases.append(str(case))
        checks = sorted(
            key + (f" (e.g. {', '.join(repr(c) for c in cases)})" if cases else "")
            for key, cases in examples.items()
        )
        return (
            f"{self.failure_count} failure(s) in {self.rows} rows against {self.schema}: "
            + "; ".join(checks[:10])
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "rows": self.rows,
            "passed": self.passed,
            "failure_count": self.failure_count,
            "failed_columns": self.failed_columns,
            "failed_rows": self.failed_rows[:MAX_REPORTED_FAILURES],
            "failures": self.failures[:MAX_REPORTED_FAILURES],
            "summary": self.summary(),
        }


def _failure_rows(cases: pl.DataFrame) -> list[dict[str, Any]]:
    keep = [c for c in ("column", "check", "failure_case", "index") if c in cases.columns]
    rows = cases.select(keep).with_columns(pl.col("failure_case").cast(pl.String))
    return rows.to_dicts()


def validate(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> ValidationReport:
    """Validate lazily (every failure, not only the first) and describe what failed."""
    # Checked here because pandera's coercion step on polars 2 crashes on an absent column
    # instead of reporting it.
    missing = [name for name in schema.columns if name not in frame.columns]
    if missing:
        failures = [
            {"column": name, "check": "column_in_dataframe", "failure_case": name, "index": None}
            for name in missing
        ]
        return ValidationReport(schema.name, frame.height, failures, len(failures))
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        failures = _failure_rows(errors.failure_cases)
        return ValidationReport(schema.name, frame.height, failures, len(failures))
    except SchemaError as error:
        failure = {"column": None, "check": str(error), "failure_case": None, "index": None}
        return ValidationReport(schema.name, frame.height, [failure], 1)
    return ValidationReport(schema.name, frame.height)


def validate_raw(frame: pl.DataFrame, spec: ModelSpec) -> tuple[pl.DataFrame, ValidationReport]:
    """Cast and validate a raw batch; return the typed frame and every failure found."""
    typed, cast_failures = normalize_raw(frame, spec)
    schema = raw_schema(spec)
    report = validate(typed, schema)
    if cast_failures:
        failures = cast_failures + report.failures
        report = ValidationReport(schema.name, frame.height, failures, len(failures))
    return typed, report
