"""The drift sensor ticked against a real Dagster instance: drift reports are materialized by
real runs (a backfill of monitoring days writes several in one run), and every report since the
last tick is judged, not only the newest."""

import datetime as dt
import json

import dagster as dg
import pytest

from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import drift_episode, names, sensors
from lifecycle_assets.spec import ModelSpec

# The sensor asks the registry whether a retrain would train on anything new: a temporary one.
pytestmark = pytest.mark.usefixtures("lifecycle_env")


class DriftTicker:
    """Ticks the drift sensor, keeping its cursor between ticks as the daemon does."""

    def __init__(self, spec: ModelSpec, instance: dg.DagsterInstance) -> None:
        self.defs = build_definitions([spec])
        self.sensor = self.defs.get_sensor_def(f"{spec.name}_drift_sensor")
        self.instance, self.cursor = instance, None

    def __call__(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=self.defs
        )
        result = self.sensor.evaluate_tick(context)
        if result.cursor is not None:
            self.cursor = result.cursor
        return result


def _reports(
    instance: dg.DagsterInstance, spec: ModelSpec, days: list[tuple[str, list[str] | None]]
) -> None:
    """One real run materializing a drift report per (day, drifted features) in order, with
    the metadata `drift_report` records; None: a day without traffic (no verdict key)."""
    key = names.key(spec.name, names.DRIFT_REPORT)

    @dg.op
    def report_days(context: dg.OpExecutionContext) -> None:
        for day, features in days:
            metadata = (
                {"rows": 0}
                if features is None
                else {
                    "drifted": bool(features),
                    "drifted_features": dg.MetadataValue.json(features),
                }
            )
            context.log_event(dg.AssetMaterialization(key, partition=day, metadata=metadata))

    @dg.job
    def monitoring_backfill() -> None:
        report_days()

    assert monitoring_backfill.execute_in_process(instance=instance).success


def _reason(result: dg.SensorResult) -> str:
    (request,) = result.run_requests
    assert request.tags["lifecycle/trigger"] == "drift"
    return request.tags["lifecycle/reason"]


def test_a_drifted_day_then_a_clean_one_between_ticks_requests_one_retrain(
    spec: ModelSpec,
) -> None:
    with dg.instance_for_test() as instance:
        tick = DriftTicker(spec, instance)
        assert tick().skip_message == "no drift report has been materialized yet"
        _reports(instance, spec, [("2026-02-07", [])])
        clean = tick()
        assert not clean.run_requests
        assert clean.skip_message == "no drift in the drift report of 2026-02-07"

        # A backfill (or a stopped sensor): a drifted day, then a clean one, before the tick.
        _reports(instance, spec, [("2026-02-08", ["income"]), ("2026-02-09", [])])
        reason = _reason(tick())
        assert "2026-02-08" in reason and "income" in reason
        assert "2026-02-09" not in reason, "the clean day is not named as drifted"

        idle = tick()
        assert not idle.run_requests
        assert idle.skip_message == "no new drift report since the one of 2026-02-09"

        # Drift again within the cooldown: said, not requested, and not carried over.
        _reports(instance, spec, [("2026-02-10", None), ("2026-02-11", ["age", "income"])])
        cooled = tick()
        assert not cooled.run_requests
        assert "drift on 2026-02-11 in ['age', 'income']" in cooled.skip_message
        assert "cooldown lasts until" in cooled.skip_message
        assert not tick().run_requests

        # Past the cooldown, the next drifted report is acted on.
        state = json.loads(tick.cursor)
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
        tick.cursor = json.dumps({**state, "triggered_at": long_ago.isoformat()})
        _reports(instance, spec, [("2026-02-12", ["debt_ratio"])])
        assert "2026-02-12 in ['debt_ratio']" in _reason(tick())


def test_a_day_materialized_again_counts_by_its_newest_report(spec: ModelSpec) -> None:
    with dg.instance_for_test() as instance:
        tick = DriftTicker(spec, instance)
        tick()
        # Re-run after a fix: the day's newest report is clean, so nothing drifted.
        _reports(instance, spec, [("2026-02-08", ["income"]), ("2026-02-08", [])])
        fixed = tick()
        assert not fixed.run_requests
        assert "no drift in the drift report of 2026-02-08" in fixed.skip_message
        assert "1 superseded by a newer report of the same day" in fixed.skip_message
        # And the other way round: the newest report of the day drifted.
        _reports(instance, spec, [("2026-02-09", []), ("2026-02-09", ["age"])])
        assert "2026-02-09 in ['age']" in _reason(tick())


def test_a_long_backlog_is_read_in_bounded_ticks_without_skipping_a_report(
    spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sensors, "DRIFT_REPORTS_PER_TICK", 2)
    with dg.instance_for_test() as instance:
        tick = DriftTicker(spec, instance)
        tick()
        _reports(instance, spec, [("2026-02-01", []), ("2026-02-02", []), ("2026-02-03", ["age"])])
        first = tick()
        assert not first.run_requests
        assert "no drift in the 2 drift reports of 2026-02-01, 2026-02-02" in first.skip_message
        assert "more reports wait for the next tick" in first.skip_message
        assert "2026-02-03 in ['age']" in _reason(tick())

    with dg.instance_for_test() as instance:
        tick = DriftTicker(spec, instance)
        tick()
        # The day's newest report lies past this tick's page: the older one is not acted on.
        _reports(instance, spec, [("2026-02-04", ["age"]), ("2026-02-05", []), ("2026-02-04", [])])
        deferred = tick()
        assert not deferred.run_requests
        assert "2026-02-04 has a newer report, judged next tick" in deferred.skip_message
        last = tick()
        assert not last.run_requests and "no drift in the drift report of 2026-02-04" in (
            last.skip_message
        )


def test_a_sensor_started_on_an_existing_history_judges_the_newest_report_onwards(
    spec: ModelSpec,
) -> None:
    """Without a cursor (first start, or reset), reports older than the newest predate the
    sensor: a months-old drift does not retrain today."""
    with dg.instance_for_test() as instance:
        _reports(instance, spec, [("2026-01-02", ["age"]), ("2026-01-03", [])])
        tick = DriftTicker(spec, instance)
        first = tick()
        assert not first.run_requests
        assert first.skip_message == "no drift in the drift report of 2026-01-03"
        _reports(instance, spec, [("2026-01-04", ["age"]), ("2026-01-05", [])])
        assert "2026-01-04 in ['age']" in _reason(tick())


def test_a_backfill_of_many_drifted_days_is_one_request_naming_them_in_a_short_tag(
    spec: ModelSpec,
) -> None:
    with dg.instance_for_test() as instance:
        tick = DriftTicker(spec, instance)
        tick()
        days = [(f"2026-01-{d:02d}", ["age", "income"]) for d in range(1, 31)]
        _reports(instance, spec, days)
        reason = _reason(tick())
        assert reason.startswith("drift on 2026-01-01 in ['age', 'income']; 2026-01-02")
        assert len(reason) <= drift_episode.REASON_CHARS and reason.endswith("more days")
        assert not tick().run_requests, "the next tick requests nothing again"
