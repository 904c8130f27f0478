"""What one landed file costs the new-data sensor in the default 60-day window.

A landing folder of 59 simulated days (`lifecycle simulate`'s files, 400 rows each) is ingested
by one range run; then a 60th day's file lands, and the sensor is ticked against the real
(temporary) Dagster instance with every run it requests executed, as the daemon would; then an
old day's file is replaced with other rows, and the same again. Prints, for each, the days
re-read and the seconds from the tick to the last run's end. Everything lives in a temporary
folder.

    python benchmarks/landing.py                            # this checkout's code
    PYTHONPATH=/path/to/other/checkout python benchmarks/landing.py   # another's, to compare
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

WINDOW = 60
START = dt.date(2026, 1, 1)


def _environment(root: Path) -> None:
    (root / "dagster_home").mkdir()
    os.environ.update(
        LIFECYCLE_HOME=str(root / "home"),
        DAGSTER_HOME=str(root / "dagster_home"),
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        GIT_PYTHON_REFRESH="quiet",
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="landing-bench-"))
    _environment(root)
    import dagster as dg

    from lifecycle_assets.data.landing import scan_landing
    from lifecycle_assets.data.simulator import simulate_day
    from lifecycle_assets.definitions import build_definitions
    from lifecycle_assets.defs.jobs import ingest_job_name
    from lifecycle_assets.defs.partition_ranges import range_tags
    from lifecycle_assets.run_submission import execute
    from lifecycle_assets.spec import default_spec

    days = [START + dt.timedelta(days=n) for n in range(WINDOW)]
    landing = root / "landing"
    landing.mkdir()
    base = default_spec()
    spec = base.model_copy(
        update={
            "source": base.source.model_copy(update={"uri": str(landing), "format": "parquet"}),
            "start_date": days[0],
            "end_date": days[-1],
            "training": base.training.model_copy(update={"window_days": WINDOW}),
        }
    )
    for day in days[:-1]:
        simulate_day(day).write_parquet(landing / f"{day}.parquet")
    defs = build_definitions([spec])
    job = defs.resolve_job_def(ingest_job_name(spec))
    sensor = defs.get_sensor_def(f"{spec.name}_new_data_sensor")
    with dg.DagsterInstance.get() as instance:
        keys = [day.isoformat() for day in days[:-1]]
        assert execute(job, instance, tags=range_tags(keys)).success
        cursor = json.dumps(scan_landing(spec, landing, {}).cursor)

        def tick(what: str) -> None:
            nonlocal cursor
            started = time.perf_counter()
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            result = sensor.evaluate_tick(context)
            read = 0
            for request in result.run_requests:
                run = execute(job, instance, partition_key=request.partition_key, tags=request.tags)
                assert run.success, request
                start = request.tags.get("dagster/asset_partition_range_start")
                end = request.tags.get("dagster/asset_partition_range_end")
                read += (
                    1
                    if start is None
                    else (dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days + 1
                )
            cursor = result.cursor or cursor
            seconds = time.perf_counter() - started
            runs = len(result.run_requests)
            print(f"{what}: {read} day(s) re-read in {runs} run(s), {seconds:.1f} s")

        simulate_day(days[-1]).write_parquet(landing / f"{days[-1]}.parquet")
        tick(f"one new file ({days[-1]})")
        simulate_day(days[9], seed=7).write_parquet(landing / f"{days[9]}.parquet")
        os.utime(landing / f"{days[9]}.parquet", (2e9, 2e9))
        tick(f"one old file replaced ({days[9]})")


if __name__ == "__main__":
    sys.exit(main())
