"""The new-data sensor, evaluated on an ephemeral instance as Dagster's testing guide does."""

import datetime as dt
import io
import json
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lifecycle_assets import storage
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.data.sources import read_day, source_format
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.partition_ranges import RANGE_END_TAG, RANGE_START_TAG
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.team_servers import S3Server, moto_s3  # noqa: F401  (fixture)


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


def _parquet(day: dt.date) -> bytes:
    buffer = io.BytesIO()
    simulate_day(day).write_parquet(buffer)
    return buffer.getvalue()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.team)])
def landing_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A landing folder on the local disk, or a prefix in moto's S3 (reached by endpoint)."""
    if request.param == "local":
        return str(tmp_path / "landing")
    server: S3Server = request.getfixturevalue("moto_s3")
    return server.url(f"landing-{uuid.uuid4().hex[:8]}/credit_default")


def test_a_tick_hashes_only_objects_whose_listing_changed(
    landing_root: str, spec: ModelSpec
) -> None:
    """Listing metadata (size with ETag or mtime) decides what is downloaded and hashed; the
    content hash still keys the runs, so a rewrite under the same name is a new batch."""
    source = spec.source.model_copy(update={"uri": landing_root, "format": "parquet"})
    folder_spec = spec.model_copy(update={"source": source})
    sensor = _sensor(folder_spec)
    storage.write_atomic(f"{landing_root}/a.parquet", _parquet(dt.date(2026, 1, 4)))
    first = _evaluate(sensor)
    assert [r.partition_key for r in first.run_requests] == ["2026-01-04"]
    # The run it requests reads the day from the same folder, through the same door.
    rows, _ = read_day(folder_spec, dt.date(2026, 1, 4))
    assert rows.equals(simulate_day(dt.date(2026, 1, 4)))

    idle = _evaluate(sensor, first.cursor)
    assert not idle.run_requests
    assert "no new or changed file among 1" in idle.skip_message
    assert "(hashed 0 of 1)" in idle.skip_message, "an idle tick downloads nothing"

    storage.write_atomic(f"{landing_root}/b.parquet", _parquet(dt.date(2026, 1, 5)))
    new = _evaluate(sensor, idle.cursor)
    assert [r.partition_key for r in new.run_requests] == ["2026-01-05"]
    assert json.loads(new.cursor).keys() == {"a.parquet", "b.parquet"}
    assert _evaluate(sensor, new.cursor).skip_message.endswith("(hashed 0 of 2)"), (
        "only the new object was hashed; the next tick hashes none"
    )

    # The same name, other bytes: a new batch with its own run key, the old one untouched.
    storage.write_atomic(f"{landing_root}/a.parquet", _parquet(dt.date(2026, 1, 6)))
    rewritten = _evaluate(sensor, new.cursor)
    assert [r.partition_key for r in rewritten.run_requests] == ["2026-01-06"]
    assert rewritten.run_requests[0].tags["lifecycle/landed_file"] == "a.parquet"
    old_key, new_key = first.run_requests[0].run_key, rewritten.run_requests[0].run_key
    assert old_key.split(":")[1] != new_key.split(":")[1], "keyed by the new content"
    after = json.loads(rewritten.cursor)
    assert after["a.parquet"] != json.loads(new.cursor)["a.parquet"]
    assert after["b.parquet"] == json.loads(new.cursor)["b.parquet"]

    # The same bytes written again: new metadata at most, never a new batch.
    storage.write_atomic(f"{landing_root}/a.parquet", _parquet(dt.date(2026, 1, 6)))
    same = _evaluate(sensor, rewritten.cursor)
    assert not same.run_requests
    assert json.loads(same.cursor)["a.parquet"]["sha256"] == after["a.parquet"]["sha256"]
    unformatted = folder_spec.model_copy(
        update={"source": source.model_copy(update={"format": None})}
    )
    assert source_format(unformatted) == "parquet", "told from the folder's listing"


def test_a_cursor_of_the_older_form_is_upgraded_without_new_runs(
    tmp_path: Path, spec: ModelSpec
) -> None:
    """Cursors written before listing metadata (name -> content fingerprint) hash each file
    once more, request nothing for unchanged content, and come back in the new form."""
    landing = tmp_path / "landing"
    landing.mkdir()
    source = spec.source.model_copy(update={"uri": str(landing), "format": "parquet"})
    sensor = _sensor(spec.model_copy(update={"source": source}))
    storage.write_atomic(landing / "a.parquet", _parquet(dt.date(2026, 1, 4)))
    current = json.loads(_evaluate(sensor).cursor)
    old_form = json.dumps({"a.parquet": current["a.parquet"]["sha256"]})
    upgraded = _evaluate(sensor, old_form)
    assert not upgraded.run_requests and "(hashed 1 of 1)" in upgraded.skip_message
    assert json.loads(upgraded.cursor) == current
