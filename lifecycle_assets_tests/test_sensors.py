"""The new-data and model-card sensors, evaluated on an ephemeral instance as Dagster's testing
guide does."""

import datetime as dt
import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lifecycle_assets import storage
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.data.sources import read_day, source_format
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names, sensors
from lifecycle_assets.defs.jobs import model_card_job_name
from lifecycle_assets.defs.partition_ranges import RANGE_END_TAG, RANGE_START_TAG
from lifecycle_assets.run_submission import TAG_SUBMITTED_BY
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


def test_a_file_without_a_readable_timestamp_is_named_not_skipped_in_silence(
    tmp_path: Path, spec: ModelSpec
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    folder_spec = spec.model_copy(
        update={"source": spec.source.model_copy(update={"uri": str(landing), "format": "parquet"})}
    )
    day_first = simulate_day(dt.date(2026, 1, 4)).with_columns(
        pl.lit("04/01/2026").alias(spec.timestamp)
    )
    day_first.write_parquet(landing / "day_first.parquet")
    result = _evaluate(_sensor(folder_spec))
    assert not result.run_requests
    assert "no readable event timestamp in ['day_first.parquet']" in result.skip_message


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


def _evaluated(
    instance: dg.DagsterInstance,
    spec: ModelSpec,
    version: str,
    tags: dict[str, str],
    during: Callable[[], None] = lambda: None,
) -> str:
    """A real run that materializes `version`'s evaluation (what the training job records),
    calling `during` while it is still STARTED; its run id."""
    key = names.key(spec.name, names.EVALUATION_REPORT)

    @dg.op
    def evaluate(context: dg.OpExecutionContext) -> None:
        context.log_event(dg.AssetMaterialization(key, metadata={"model_version": version}))
        during()

    @dg.job
    def evaluation_job() -> None:
        evaluate()

    return evaluation_job.execute_in_process(instance=instance, tags=tags).run_id


def _carded(instance: dg.DagsterInstance, spec: ModelSpec, version: str) -> None:
    key = names.key(spec.name, names.MODEL_CARD)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(key, metadata={"model_version": version})
    )


def test_the_card_sensor_leaves_a_lifecycle_runs_card_to_the_command(
    spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the team's instance the daemon ticks the sensor while `lifecycle run` works: between
    its training run and its own card run, a tick must not request a second card."""
    defs = build_definitions([spec])
    sensor = defs.get_sensor_def(f"{spec.name}_model_card_sensor")
    card_job = defs.resolve_job_def(model_card_job_name(spec))
    cli = {TAG_SUBMITTED_BY: "laptop:4242"}
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None = None) -> dg.SensorResult:
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            return sensor.evaluate_tick(context)

        ticks_while_running = []
        run_id = _evaluated(instance, spec, "7", cli, lambda: ticks_while_running.append(tick()))
        (running,) = ticks_while_running
        # The cursor stops just before v7's evaluation: the next tick starts with it again.
        assert not running.run_requests and running.cursor is not None
        assert f"evaluation run {run_id} is STARTED: its card waits" in running.skip_message

        ended = tick()
        assert not ended.run_requests and ended.cursor == running.cursor, "waits for the card"
        assert "evaluated v7" in tick(ended.cursor).skip_message
        assert "`lifecycle run` (laptop:4242) evaluated v7 and writes its card" in (
            ended.skip_message
        )
        # The command's card run is being launched: it is the card, not a reason for another.
        starting = instance.create_run_for_job(card_job, status=dg.DagsterRunStatus.STARTING)
        assert f"card run {starting.run_id} is STARTING" in tick().skip_message
        instance.delete_run(starting.run_id)
        _carded(instance, spec, "7")
        done = tick()
        assert not done.run_requests and "v7 already has its card" in done.skip_message
        assert done.cursor is not None
        assert tick(done.cursor).skip_message == "no new evaluation since the last card"

        # A command that died before its card run: after the grace the sensor writes the card.
        monkeypatch.setattr(sensors, "CLI_CARD_GRACE_SECONDS", 0)
        _evaluated(instance, spec, "8", cli)
        late_tick = tick(done.cursor)
        (late,) = late_tick.run_requests
        assert late.run_key == "model-card-v8" and late.tags["lifecycle/model_version"] == "8"
        # A version evaluated another way (UI, schedule) gets its card at once.
        monkeypatch.setattr(sensors, "CLI_CARD_GRACE_SECONDS", 3600)
        _evaluated(instance, spec, "9", {})
        (other,) = tick(late_tick.cursor).run_requests
        assert other.run_key == "model-card-v9"


def test_two_evaluations_between_ticks_each_get_their_own_card(spec: ModelSpec) -> None:
    """Two versions evaluated between two ticks (a schedule and a manual run): each gets a card
    run, in turn, and each card run reads its own version's evaluation run, not the latest."""
    defs = build_definitions([spec])
    sensor = defs.get_sensor_def(f"{spec.name}_model_card_sensor")
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None = None) -> dg.SensorResult:
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            return sensor.evaluate_tick(context)

        _evaluated(instance, spec, "1", {})
        _carded(instance, spec, "1")
        start = tick().cursor
        assert start is not None
        runs = {version: _evaluated(instance, spec, version, {}) for version in ("2", "3")}
        first = tick(start)
        second = tick(first.cursor)
        requests = [*first.run_requests, *second.run_requests]
        assert [r.run_key for r in requests] == ["model-card-v2", "model-card-v3"]
        assert [r.tags[names.SOURCE_RUN_TAG] for r in requests] == [runs["2"], runs["3"]]
        assert tick(second.cursor).skip_message == "no new evaluation since the last card"


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", "abc"])
def test_an_unreadable_cursor_starts_over_instead_of_failing_every_tick(
    tmp_path: Path, spec: ModelSpec, garbage: str
) -> None:
    """A cursor set by hand (`dagster sensor cursor --set`) to something the sensor cannot read
    counts as none: each sensor ticks (requests or skips with its reason), never raises."""
    landing = tmp_path / "landing"
    landing.mkdir()
    simulate_day(dt.date(2026, 1, 4)).write_parquet(landing / "a.parquet")
    folder_spec = spec.model_copy(
        update={"source": spec.source.model_copy(update={"uri": str(landing), "format": "parquet"})}
    )
    fresh = _evaluate(_sensor(folder_spec), garbage)
    assert [r.partition_key for r in fresh.run_requests] == ["2026-01-04"]
    defs = build_definitions([spec])
    with dg.instance_for_test() as instance:
        for sensor, reason in (
            ("drift_sensor", "no drift report has been materialized yet"),
            ("model_card_sensor", "nothing evaluated yet"),
        ):
            context = dg.build_sensor_context(instance=instance, cursor=garbage, definitions=defs)
            result = defs.get_sensor_def(f"{spec.name}_{sensor}").evaluate_tick(context)
            assert not result.run_requests and result.skip_message == reason, sensor


def test_a_fresh_card_sensor_misses_no_version_evaluated_before_its_second_tick(
    spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sensor is on by default, so its first ticks find nothing: two versions evaluated
    before the next tick each get a card. And the version it waits on during `lifecycle run`'s
    grace stays first in line when another version is evaluated meanwhile."""
    defs = build_definitions([spec])
    sensor = defs.get_sensor_def(f"{spec.name}_model_card_sensor")
    with dg.instance_for_test() as instance:
        cursor: str | None = None

        def tick() -> dg.SensorResult:
            nonlocal cursor
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            result = sensor.evaluate_tick(context)
            cursor = result.cursor if result.cursor is not None else cursor
            return result

        assert tick().skip_message == "nothing evaluated yet"
        _evaluated(instance, spec, "1", {})
        _evaluated(instance, spec, "2", {})
        keys = [r.run_key for r in (*tick().run_requests, *tick().run_requests)]
        assert keys == ["model-card-v1", "model-card-v2"]

    with dg.instance_for_test() as instance:
        cursor = None
        # A sensor started on an existing history: `lifecycle run` just evaluated v3 and its
        # card is the command's for the grace; the command dies, and v4 is evaluated from the UI.
        _evaluated(instance, spec, "3", {TAG_SUBMITTED_BY: "laptop:4242"})
        assert "writes its card itself" in tick().skip_message
        _evaluated(instance, spec, "4", {})
        assert "v3 and writes its card itself" in tick().skip_message, "v3 is not skipped"
        monkeypatch.setattr(sensors, "CLI_CARD_GRACE_SECONDS", 0)
        keys = [r.run_key for r in (*tick().run_requests, *tick().run_requests)]
        assert keys == ["model-card-v3", "model-card-v4"]
        assert tick().skip_message == "no new evaluation since the last card"
