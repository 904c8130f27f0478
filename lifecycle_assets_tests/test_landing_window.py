"""What the daemon's new-data sensor ingests leaves the training window usable.

A day's stored batch used to carry the hash of the whole source folder, so a newly landed file
made every stored day stale, and the sensor, which ingested only the new file's days, left the
scheduled training a stale window ("2 usable day(s) of data in the window of 14 (0 quarantined,
12 stale)"). Each day now carries the hash of its own files (`test_landing_per_day.py`); this
still holds.
"""

import datetime as dt
from pathlib import Path

import dagster as dg

from lifecycle_assets.config import Settings
from lifecycle_assets.data.ingest import select_window
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.jobs import ingest_job_name
from lifecycle_assets.run_submission import execute
from lifecycle_assets.spec import ModelSpec


def _tick_and_ingest(defs: dg.Definitions, spec: ModelSpec, cursor: str | None) -> str | None:
    """One tick of the sensor, and each run it requests executed as the daemon would."""
    sensor = defs.get_sensor_def(f"{spec.name}_new_data_sensor")
    job = defs.resolve_job_def(ingest_job_name(spec))
    with dg.DagsterInstance.get() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        tick = sensor.evaluate_tick(context)
        for request in tick.run_requests:
            result = execute(job, instance, partition_key=request.partition_key, tags=request.tags)
            assert result.success, request
    return tick.cursor


def test_landing_a_day_leaves_the_whole_window_fresh(
    tmp_path: Path, spec: ModelSpec, lifecycle_env
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    days = [dt.date(2026, 1, 3) + dt.timedelta(days=n) for n in range(4)]
    folder_spec = spec.model_copy(
        update={
            "source": spec.source.model_copy(update={"uri": str(landing), "format": "parquet"}),
            "start_date": days[0],
            "end_date": days[-1],
            "training": spec.training.model_copy(update={"window_days": 4}),
        }
    )
    defs = build_definitions([folder_spec])
    for day in days[:3]:
        simulate_day(day, rows_per_day=50).write_parquet(landing / f"{day}.parquet")
    cursor = _tick_and_ingest(defs, folder_spec, None)

    simulate_day(days[3], rows_per_day=50).write_parquet(landing / f"{days[3]}.parquet")
    _tick_and_ingest(defs, folder_spec, cursor)

    settings = Settings.from_env()
    selection = select_window(
        Lake(settings.lake_dir, settings.quarantine_dir, spec.name), folder_spec
    )
    assert selection.stale == [], "the sensor left stored days of the window stale"
    assert sorted(selection.days) == [day.isoformat() for day in days]
