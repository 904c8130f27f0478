"""Train/serve parity: the same rows give identical features in the pipeline and in the service."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lifecycle_assets.config import ServingLimits
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.ml.features import UNKNOWN_CATEGORY, compute_features, feature_table
from lifecycle_assets.serving.requests import RequestValidator
from lifecycle_assets.spec import ModelSpec


@pytest.fixture
def raw_batch(spec: ModelSpec) -> pl.DataFrame:
    """A simulated day plus the awkward rows: nulls, unknown and oddly written levels, zeros."""
    day = simulate_day(dt.date(2026, 2, 1), rows_per_day=300)
    awkward = day.head(4).with_columns(
        pl.Series("income", [None, 0.0, 1e9, 35000.5]),
        pl.Series("credit_score", [None, 300.0, 850.0, None]),
        pl.Series("home_ownership", ["  RENT ", "boat", "own", "Mortgage"]),
        pl.Series("region", ["north", "atlantis", "", "WEST"]),
        pl.Series("employment_years", [None, 0.0, 59.9, None]),
    )
    return pl.concat([day, awkward.cast(day.schema)])


def pipeline_features(raw: pl.DataFrame, spec: ModelSpec, tmp_path: Path) -> pl.DataFrame:
    """The pipeline path: the raw batch stored as Parquet, read back, turned into the table."""
    path = tmp_path / "batch.parquet"
    raw.write_parquet(path)
    return feature_table(pl.read_parquet(path), spec).select(spec.feature_names)


def service_features(raw: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """The service path: JSON records, validation, the validator's frame, compute_features."""
    columns = [f.name for f in spec.features] + [spec.id_column]
    body = json.dumps({"records": raw.select(columns).to_dicts()}).encode()
    # The awkward rows hold unknown levels on purpose: flag them instead of refusing the batch.
    limit = ServingLimits().max_batch_size
    validator = RequestValidator(spec, max_batch_size=limit, on_out_of_range="flag")
    return compute_features(validator.parse(body).frame, spec)


def test_same_rows_same_features(raw_batch: pl.DataFrame, spec: ModelSpec, tmp_path: Path) -> None:
    expected = pipeline_features(raw_batch, spec, tmp_path)
    served = service_features(raw_batch, spec)
    assert served.columns == spec.feature_names
    assert_frame_equal(served, expected, check_exact=True)


def test_awkward_rows_are_really_exercised(
    raw_batch: pl.DataFrame, spec: ModelSpec, tmp_path: Path
) -> None:
    """Guards the parity test itself: the edge cases must reach the features it compares."""
    features = service_features(raw_batch, spec).tail(4)
    # Levels are compared exactly as the spec writes them: other spellings are unknown.
    assert features["home_ownership"].to_list() == [
        UNKNOWN_CATEGORY,
        UNKNOWN_CATEGORY,
        "own",
        UNKNOWN_CATEGORY,
    ]
    assert features["region"][1] == UNKNOWN_CATEGORY
    assert features["loan_to_income"][:2].to_list() == [None, None]
    assert features["credit_score"].null_count() == 2
