"""Specs, the simulator, user sources, validation and the content-addressed lake."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml

from lifecycle_assets.data.lake import IntegrityError, Lake, canonical_parquet, sha256_bytes
from lifecycle_assets.data.simulator import ShiftKnobs, simulate_day
from lifecycle_assets.data.sources import read_day
from lifecycle_assets.ml.schemas import validate_raw
from lifecycle_assets.spec import DEFAULT_SPEC_PATH, ModelSpec, load_spec

DAY = dt.date(2026, 1, 5)


def _raw_spec() -> dict:
    return yaml.safe_load(DEFAULT_SPEC_PATH.read_text())


def test_spec_rejects_inconsistent_columns(tmp_path: Path) -> None:
    raw = _raw_spec()
    raw["features"].append(dict(raw["features"][0]))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="listed twice"):
        load_spec(path)
    raw = _raw_spec()
    raw["sensitive_attribute"] = "age"
    with pytest.raises(ValueError, match="must be categorical"):
        ModelSpec.model_validate(raw)


def test_sensitive_attribute_is_not_a_model_input(spec: ModelSpec) -> None:
    assert spec.sensitive_attribute not in spec.feature_names
    assert "loan_to_income" in spec.feature_names


def test_simulator_is_deterministic_and_shifts(spec: ModelSpec) -> None:
    first, second = simulate_day(DAY), simulate_day(DAY)
    assert sha256_bytes(canonical_parquet(first)) == sha256_bytes(canonical_parquet(second))
    assert first["income"].null_count() > 0, "the stream has missing values"
    shifted = simulate_day(DAY, shift=ShiftKnobs(covariate=1.0))
    assert shifted["credit_score"].mean() < first["credit_score"].mean() - 25
    more_defaults = simulate_day(DAY, shift=ShiftKnobs(label=1.0))
    assert more_defaults["default"].mean() > first["default"].mean() + 0.1


def test_user_csv_source_reads_one_day(tmp_path: Path, spec: ModelSpec) -> None:
    rows = pl.concat([simulate_day(DAY), simulate_day(DAY + dt.timedelta(days=1))])
    path = tmp_path / "loans.csv"
    rows.with_columns(pl.col("event_time").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(path)
    csv_spec = spec.model_copy(update={"source": spec.source.model_copy(update={"uri": str(path)})})
    frame, source = read_day(csv_spec, DAY)
    assert source == str(path)
    assert frame.height == 400
    typed, report = validate_raw(frame, csv_spec)
    assert report.passed, report.summary()
    assert typed["age"].dtype == pl.Float64


def test_validation_names_failing_columns_and_rows(spec: ModelSpec) -> None:
    frame = simulate_day(DAY).with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(-5.0).otherwise(pl.col("age")).alias("age"),
        pl.when(pl.int_range(pl.len()) == 9)
        .then(pl.lit("martian"))
        .otherwise(pl.col("region"))
        .alias("region"),
    )
    _, report = validate_raw(frame, spec)
    assert not report.passed
    assert report.failed_columns == ["age", "region"]
    assert report.failed_rows == [3, 9]
    assert "age" in report.summary()
    _, missing = validate_raw(frame.drop("loan_amount"), spec)
    assert missing.failures[0]["check"] == "column_in_dataframe"


def test_lake_quarantines_bad_batches_and_detects_tampering(tmp_path: Path, spec) -> None:
    lake = Lake(tmp_path / "lake", tmp_path / "quarantine", spec.name)
    good = simulate_day(DAY)
    record = lake.store_batch("2026-01-05", good, "test://good", {"passed": True})
    assert record.status == "accepted"
    assert Path(record.path).name == f"{record.sha256}.parquet"
    assert lake.read_batch(record).equals(good)

    bad = good.with_columns(pl.lit(-1.0).alias("age"))
    _, report = validate_raw(bad, spec)
    quarantined = lake.store_batch("2026-01-06", bad, "test://bad", report.to_dict())
    assert quarantined.status == "quarantined"
    assert Path(quarantined.path).is_relative_to(tmp_path / "quarantine")
    assert Path(quarantined.path).with_suffix(".report.json").exists()
    assert lake.read_batch(quarantined).height == bad.height, "nothing is dropped"

    Path(record.path).write_bytes(canonical_parquet(good.head(10)))
    with pytest.raises(IntegrityError, match="expected"):
        lake.read_batch(record)


def test_shadow_scores_are_not_traffic() -> None:
    from lifecycle_assets.data.prediction_log import answered

    rows = pl.DataFrame(
        {"prediction_id": ["a", "b", "c"], "variant": ["champion", "shadow", "canary"]}
    )
    assert answered(rows)["prediction_id"].to_list() == ["a", "c"]
    assert answered(rows.drop("variant")).height == 3


def test_two_spec_files_of_one_model_end_lifecycle_run_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LIFECYCLE_SPECS naming one model twice is a spec a person must fix: one line, exit 1,
    before anything is written (it was a ValueError and its traceback)."""
    from click.testing import CliRunner

    from lifecycle_assets.cli import main

    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("LIFECYCLE_SPECS", f"{DEFAULT_SPEC_PATH},{DEFAULT_SPEC_PATH}")
    monkeypatch.delenv("LIFECYCLE_DAGSTER_URL", raising=False)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no uncaught error
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: LIFECYCLE_SPECS names a model twice: ['credit_default'"), line
    assert not (tmp_path / "home").exists() and not (tmp_path / "dagster_home").exists()
