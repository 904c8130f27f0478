"""The new-data sensor, evaluated on an ephemeral instance as Dagster's testing guide does."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import polars as pl

from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.partition_ranges import RANGE_END_TAG, RANGE_START_TAG
from lifecycle_assets.spec import ModelSpec


def _sensor(spec: ModelSpec) -> tuple[dg.SensorDefinition, dg.Definitions]:
    defs = build_definitions([spec])
    return defs.get_sensor_def(f"{spec.name}_new_data_sensor"), defs


def _evaluate(sensor: tuple[dg.SensorDefinition, dg.Definitions], cursor: str | None = None):
    sensor_def, defs = sensor
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        return sensor_def.evaluate_tick(context)


def test_new_files_request_their_days_once(tmp_path: Path, spec: ModelSpec) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    folder_spec = spec.model_copy(
        update={"source": spec.source.model_copy(update={"uri": str(landing), "format": "parquet"})}
    )
    sensor = _sensor(folder_spec)
    empty = _evaluate(sensor)
    assert not empty.run_requests and "no new or changed file" in empty.skip_message

    simulate_day(dt.date(2026, 1, 4)).write_parquet(landing / "a.parquet")
    first = _evaluate(sensor)
    assert [r.partition_key for r in first.run_requests] == ["2026-01-04"]
    assert first.run_requests[0].run_key.startswith("2026-01-04..2026-01-04:")

    again = _evaluate(sensor, first.cursor)
    assert not again.run_requests, "an unchanged file does not trigger twice"

    simulate_day(dt.date(2026, 1, 5)).write_parquet(landing / "b.parquet")
    second = _evaluate(sensor, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["2026-01-05"]
    assert set(json.loads(second.cursor)) == {"a.parquet", "b.parquet"}

    # A file of several days is one run over their range, not one run per day.
    days = [dt.date(2026, 1, d) for d in (10, 11, 12, 14)]
    pl.concat([simulate_day(d) for d in days]).write_parquet(landing / "c.parquet")
    third = _evaluate(sensor, second.cursor)
    ranges = [(r.tags.get(RANGE_START_TAG), r.tags.get(RANGE_END_TAG)) for r in third.run_requests]
    assert ranges == [("2026-01-10", "2026-01-12"), (None, None)]
    assert third.run_requests[1].partition_key == "2026-01-14"


def test_simulator_source_is_skipped_with_a_reason(spec: ModelSpec) -> None:
    result = _evaluate(_sensor(spec))
    assert not result.run_requests
    assert "not a local landing folder" in result.skip_message
