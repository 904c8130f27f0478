"""The ingest window is one Dagster run per model, each day still its own partition.

The window used to be one Dagster run per day and model (120 runs for the default project).
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.defs.partition_ranges import contiguous_blocks
from lifecycle_assets.lifecycle_run import ingest_window, partitions_in_window
from lifecycle_assets.spec import ModelSpec

pytestmark = pytest.mark.e2e


def _small(spec: ModelSpec, **source) -> ModelSpec:
    return spec.model_copy(
        update={
            "training": spec.training.model_copy(update={"window_days": 6}),
            "source": spec.source.model_copy(update=source),
        }
    )


def _latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, day: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_contiguous_blocks() -> None:
    days = ["2026-01-05", "2026-01-01", "2026-01-02", "2026-01-04"]
    assert contiguous_blocks(days) == [["2026-01-01", "2026-01-02"], ["2026-01-04", "2026-01-05"]]
    assert contiguous_blocks([]) == []


def test_the_window_is_one_run_with_a_version_per_day(spec, lifecycle_env) -> None:
    small = _small(spec)
    defs, instance = build_definitions([small]), dg.DagsterInstance.get()
    outcome = ingest_window(defs, small, instance)
    days = partitions_in_window(small)
    assert outcome.ingested == days and not outcome.quarantined
    assert len(instance.get_runs()) == 1, "the whole window in one Dagster run"

    lake = Lake(lifecycle_env.lake_dir, lifecycle_env.quarantine_dir, small.name)
    features = names.key(small.name, names.FEATURES)
    raw = names.key(small.name, names.RAW_BATCHES)
    assert instance.get_materialized_partitions(features) == set(days)
    shas = set()
    for day in days:
        metadata = _latest_metadata(instance, features, day)
        assert metadata["sha256"] == lake.feature_entry(day)["sha256"], day
        assert _latest_metadata(instance, raw, day)["sha256"] == lake.batch(day).sha256
        shas.add(metadata["sha256"])
    assert len(shas) == len(days), "each day carries its own content hash"

    again = ingest_window(defs, small, instance)
    assert again.skipped == days and len(instance.get_runs()) == 1


def test_a_quarantined_day_holds_back_only_itself(spec, lifecycle_env, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    small = _small(spec, uri=str(landing), format="parquet")
    days = partitions_in_window(small)
    for day in days:
        frame = simulate_day(dt.date.fromisoformat(day))
        if day == days[2]:
            frame = frame.with_columns(pl.lit(-5).cast(frame["age"].dtype).alias("age"))
        frame.write_parquet(landing / f"{day}.parquet")

    defs, instance = build_definitions([small]), dg.DagsterInstance.get()
    outcome = ingest_window(defs, small, instance)
    assert list(outcome.quarantined) == [days[2]]
    assert outcome.ingested == [d for d in days if d != days[2]]
    features = names.key(small.name, names.FEATURES)
    assert instance.get_materialized_partitions(features) == set(outcome.ingested)
    # One run for the window, then one per run of accepted days for their features.
    assert len(instance.get_runs()) == 3


def test_days_with_rows_reads_the_source_once_for_the_window(spec, tmp_path: Path) -> None:
    """A calendar gap is told from one pass over the files (no day read for it), and the
    simulator, which writes `rows_per_day` rows every day, is not run to know it."""
    from lifecycle_assets.data.sources import days_with_rows

    landing = tmp_path / "landing"
    landing.mkdir()
    small = _small(spec, uri=str(landing), format="parquet")
    days = partitions_in_window(small)
    gap = days[3]
    for day in days:
        if day != gap:
            simulate_day(dt.date.fromisoformat(day), rows_per_day=20).write_parquet(
                landing / f"{day}.parquet"
            )
    assert days_with_rows(small, days) == set(days) - {gap}
    assert days_with_rows(small, [gap]) == set()
    assert days_with_rows(_small(spec), days) == set(days)
    assert days_with_rows(_small(spec, simulator={"rows_per_day": 0}), days) == set()


def test_the_raw_check_reuses_only_its_own_runs_validation(spec, lifecycle_env) -> None:
    """In the ingest run the raw schema check takes the ingest step's report (each batch is
    validated once); a check in any other run validates the stored bytes again."""
    from lifecycle_assets.data.lake import BatchRecord
    from lifecycle_assets.data.valid_json import dumps
    from lifecycle_assets.defs.checks import raw_day

    small = _small(spec)
    defs, instance = build_definitions([small]), dg.DagsterInstance.get()
    ingest_window(defs, small, instance)
    (run,) = instance.get_runs()
    lake = Lake(lifecycle_env.lake_dir, lifecycle_env.quarantine_dir, small.name)
    day = partitions_in_window(small)[0]
    record = lake.batch(day)
    assert record.run_id == run.run_id and record.report["passed"]

    # A report that disagrees with the bytes shows which path a verdict took.
    forged = {**record.report, "passed": False, "summary": "forged", "failure_count": 1}
    manifest = lake.root / "raw" / "manifests" / f"{day}.json"
    manifest.write_text(dumps({**record.__dict__, "report": forged}))
    assert isinstance(lake.batch(day), BatchRecord)
    same_run = raw_day(small, lake, day, run.run_id)
    assert not same_run.passed and same_run.description == "forged"
    other_run = raw_day(small, lake, day, "another-run")
    assert other_run.passed and other_run.description != "forged"
