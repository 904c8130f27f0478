"""A file landing in a folder makes stale only the days it feeds, not the whole window.

A stored day used to carry the hash of the whole landing folder, so one new file made every
stored day of the window stale and the new-data sensor re-read all of them (59 extra days for one
new file in the default 60-day window). Each day now carries the hash of the files whose rows
fall on it. Ticked against a real Dagster instance, as the daemon would, with each requested run
executed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import dagster as dg
import polars as pl

from lifecycle_assets.config import Settings
from lifecycle_assets.data.fingerprint import LEGACY_SOURCE, fingerprint
from lifecycle_assets.data.ingest import day_state, featurize_day, ingest_day, select_window
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.landing import scan_landing
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.jobs import ingest_job_name
from lifecycle_assets.defs.partition_ranges import contiguous_blocks, range_tags
from lifecycle_assets.run_submission import execute
from lifecycle_assets.spec import ModelSpec

DAYS = [dt.date(2026, 1, 3) + dt.timedelta(days=n) for n in range(8)]


def _days_of(request: dg.RunRequest) -> list[str]:
    """The partition keys one run request covers (one key, or a range of them)."""
    if request.partition_key:
        return [request.partition_key]
    first = dt.date.fromisoformat(request.tags["dagster/asset_partition_range_start"])
    last = dt.date.fromisoformat(request.tags["dagster/asset_partition_range_end"])
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _tick(defs: dg.Definitions, spec: ModelSpec, cursor: str) -> tuple[str, list[str]]:
    """One tick of the new-data sensor, each run it requests executed; the days re-read."""
    sensor = defs.get_sensor_def(f"{spec.name}_new_data_sensor")
    job = defs.resolve_job_def(ingest_job_name(spec))
    with dg.DagsterInstance.get() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        tick = sensor.evaluate_tick(context)
        read: list[str] = []
        for request in tick.run_requests:
            result = execute(job, instance, partition_key=request.partition_key, tags=request.tags)
            assert result.success, request
            read += _days_of(request)
    return tick.cursor or cursor, sorted(read)


def _write(path: Path, frame: pl.DataFrame, mtime: int) -> None:
    frame.write_parquet(path)
    os.utime(path, (mtime, mtime))  # a new listing even within the clock's resolution


def _folder_spec(spec: ModelSpec, landing: Path) -> ModelSpec:
    source = spec.source.model_copy(update={"uri": str(landing), "format": "parquet"})
    return spec.model_copy(
        update={
            "source": source,
            "start_date": DAYS[0],
            "end_date": DAYS[-1],
            "training": spec.training.model_copy(update={"window_days": len(DAYS)}),
        }
    )


def _ingested(spec: ModelSpec, landing: Path, days: list[dt.date]) -> tuple[dg.Definitions, str]:
    """The folder's files for `days`, ingested by one range run per block, and the sensor's cursor
    after having seen them."""
    for number, day in enumerate(days):
        _write(landing / f"{day}.parquet", simulate_day(day, rows_per_day=30), 1_000_000 + number)
    defs = build_definitions([spec])
    keys = [day.isoformat() for day in days]
    with dg.DagsterInstance.get() as instance:
        job = defs.resolve_job_def(ingest_job_name(spec))
        for block in contiguous_blocks(keys):
            assert execute(job, instance, tags=range_tags(block)).success
    return defs, json.dumps(scan_landing(spec, landing, {}).cursor)


def _lake(spec: ModelSpec) -> Lake:
    settings = Settings.from_env()
    return Lake(settings.lake_dir, settings.quarantine_dir, spec.name)


def test_a_new_file_reads_only_its_own_day(tmp_path: Path, spec: ModelSpec, lifecycle_env) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    folder_spec = _folder_spec(spec, landing)
    defs, cursor = _ingested(folder_spec, landing, DAYS[:-1])
    ingested_at = {d: _lake(spec).batch(d.isoformat()).ingested_at for d in DAYS[:-1]}

    _write(landing / f"{DAYS[-1]}.parquet", simulate_day(DAYS[-1], rows_per_day=30), 2_000_000)
    cursor, read = _tick(defs, folder_spec, cursor)

    assert read == [DAYS[-1].isoformat()], "one new file re-read other days"
    selection = select_window(_lake(spec), folder_spec)
    assert selection.stale == []
    assert sorted(selection.days) == [day.isoformat() for day in DAYS]
    assert {d: _lake(spec).batch(d.isoformat()).ingested_at for d in DAYS[:-1]} == ingested_at


def test_a_replaced_file_reads_exactly_the_days_it_feeds(
    tmp_path: Path, spec: ModelSpec, lifecycle_env
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    folder_spec = _folder_spec(spec, landing)
    # One file feeding two days, beside one file per other day.
    pair = pl.concat(
        [simulate_day(DAYS[2], rows_per_day=30), simulate_day(DAYS[3], seed=7, rows_per_day=30)]
    )
    defs, cursor = _ingested(folder_spec, landing, [d for d in DAYS if d not in DAYS[2:4]])
    _write(landing / "pair.parquet", pair, 1_500_000)
    cursor, read = _tick(defs, folder_spec, cursor)
    assert read == [DAYS[2].isoformat(), DAYS[3].isoformat()]

    # The file of DAYS[5] rewritten with other rows: that day only.
    _write(
        landing / f"{DAYS[5]}.parquet", simulate_day(DAYS[5], seed=11, rows_per_day=30), 2_000_000
    )
    cursor, read = _tick(defs, folder_spec, cursor)
    assert read == [DAYS[5].isoformat()]

    # The two-day file rewritten with rows of DAYS[2] only: DAYS[3] is re-read too (the file
    # no longer feeds it), and is then without rows.
    _write(landing / "pair.parquet", simulate_day(DAYS[2], seed=5, rows_per_day=30), 3_000_000)
    cursor, read = _tick(defs, folder_spec, cursor)
    assert read == [DAYS[2].isoformat(), DAYS[3].isoformat()]
    lake = _lake(spec)
    assert lake.batch(DAYS[3].isoformat()) is None
    assert select_window(lake, folder_spec).stale == []

    # A deleted file makes its day stale, and the sensor re-reads it.
    (landing / f"{DAYS[6]}.parquet").unlink()
    state, why = day_state(lake, DAYS[6].isoformat(), fingerprint(folder_spec))
    assert (state, why) == ("stale", ["source file changed"])
    cursor, read = _tick(defs, folder_spec, cursor)
    assert read == [DAYS[6].isoformat()]
    assert lake.batch(DAYS[6].isoformat()) is None
    assert select_window(lake, folder_spec).stale == []


def test_a_day_stored_with_the_whole_folders_hash_is_read_once_more(
    tmp_path: Path, spec: ModelSpec, lifecycle_env
) -> None:
    """Days stored before per-day fingerprints carry the hash of the whole folder: fresh while
    the folder is unchanged, stale once (saying why) when it changed, per-day after that."""
    landing = tmp_path / "landing"
    landing.mkdir()
    folder_spec = _folder_spec(spec, landing)
    for day in DAYS[:3]:
        simulate_day(day, rows_per_day=30).write_parquet(landing / f"{day}.parquet")
    lake = _lake(spec)
    old = dataclasses.replace(fingerprint(folder_spec), files=None)  # the whole-folder form
    ingest_day(folder_spec, lake, DAYS[0].isoformat(), old)
    featurize_day(folder_spec, lake, DAYS[0].isoformat())
    stored = lake.batch(DAYS[0].isoformat()).fingerprint
    assert set(stored) == {"source", "spec", "code", "digest"}, "not the old form"

    assert day_state(lake, DAYS[0].isoformat(), fingerprint(folder_spec)) == ("fresh", [])
    simulate_day(DAYS[4], rows_per_day=30).write_parquet(landing / f"{DAYS[4]}.parquet")
    assert day_state(lake, DAYS[0].isoformat(), fingerprint(folder_spec)) == (
        "stale",
        [LEGACY_SOURCE],
    )

    ingest_day(folder_spec, lake, DAYS[0].isoformat(), fingerprint(folder_spec))
    featurize_day(folder_spec, lake, DAYS[0].isoformat())
    simulate_day(DAYS[5], rows_per_day=30).write_parquet(landing / f"{DAYS[5]}.parquet")
    assert day_state(lake, DAYS[0].isoformat(), fingerprint(folder_spec)) == ("fresh", [])
