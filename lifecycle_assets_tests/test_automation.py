"""Every sensor and schedule of a two-model project, ticked against one real Dagster instance
in the states a lifecycle leaves: nothing yet, after a training, and with new traffic.

A tick that raises fails the test; each tick must request exactly the runs it should or say
why it skips.
"""

import datetime as dt

import dagster as dg
import pytest

from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.defs.jobs import model_card_job_name, monitoring_job_name, training_job_name
from lifecycle_assets.lifecycle_run import ingest_window
from lifecycle_assets.spec import BUILTIN_SPECS_DIR, ModelSpec, load_spec

pytestmark = pytest.mark.e2e

# A Tuesday 04:00 UTC inside the built-in specs' window: every schedule's cron has passed.
NOW = dt.datetime(2026, 2, 10, 4, 0, tzinfo=dt.UTC)
YESTERDAY = "2026-02-09"


def _small(spec: ModelSpec) -> ModelSpec:
    return spec.model_copy(update={"training": spec.training.model_copy(update={"window_days": 6})})


class Ticker:
    """Ticks sensors and schedules by name, keeping each sensor's cursor like the daemon."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance = defs, instance
        self.repo = defs.get_repository_def()
        self.cursors: dict[str, str | None] = {}

    def sensor(self, name: str, *, keep_cursor: bool = True):
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors.get(name), definitions=self.defs
        )
        result = self.repo.get_sensor_def(name).evaluate_tick(context)
        if keep_cursor and result.cursor is not None:
            self.cursors[name] = result.cursor
        return result

    def schedule(self, name: str):
        context = dg.build_schedule_context(
            instance=self.instance, scheduled_execution_time=NOW, repository_def=self.repo
        )
        return self.repo.get_schedule_def(name).evaluate_tick(context)

    def every(self) -> dict[str, object]:
        """Tick everything once: none may raise."""
        ticks = {
            sensor.name: self.sensor(sensor.name)
            for sensor in self.repo.sensor_defs
            if not isinstance(sensor, dg.AutomationConditionSensorDefinition)
        }
        ticks.update({s.name: self.schedule(s.name) for s in self.repo.schedule_defs})
        return ticks


def _skipped(result, reason: str) -> bool:
    return not result.run_requests and reason in (result.skip_message or "")


def test_every_sensor_and_schedule_ticks_through_a_lifecycle(spec, lifecycle_env) -> None:
    credit = _small(spec)
    loss = _small(load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml"))
    defs = build_definitions([credit, loss])
    instance = dg.DagsterInstance.get()
    ticker = Ticker(defs, instance)

    # Nothing has run yet.
    ticks = ticker.every()
    for model in ("credit_default", "expected_loss"):
        assert _skipped(ticks[f"{model}_new_data_sensor"], "not a local landing folder")
        assert _skipped(ticks[f"{model}_drift_sensor"], "no drift report has been materialized")
        assert _skipped(ticks[f"{model}_model_card_sensor"], "nothing evaluated yet")
        ingest = ticks[f"{model}_daily_ingest_schedule"].run_requests
        assert [r.partition_key for r in ingest] == [YESTERDAY]
        assert len(ticks[f"{model}_weekly_retrain_schedule"].run_requests) == 1
        monitoring = ticks[f"{model}_daily_monitoring_schedule"].run_requests
        assert [r.partition_key for r in monitoring] == [YESTERDAY]
        refresh = ticks[f"{model}_label_refresh_schedule"].run_requests
        assert refresh[0].partition_key == YESTERDAY and len(refresh) == 7
    assert len(ticks["portfolio_daily_scorecard_schedule"].run_requests) == 1

    # credit_default is trained from the UI (its training job alone, no card yet).
    ingest_window(defs, credit, instance)
    defs.resolve_job_def(training_job_name(credit)).execute_in_process(
        instance=instance, raise_on_error=False
    )
    ticks = ticker.every()
    card = ticks["credit_default_model_card_sensor"]
    assert len(card.run_requests) == 1 and card.run_requests[0].run_key.startswith("model-card-")
    assert card.run_requests[0].tags["lifecycle/model_version"] == "1"
    assert _skipped(ticks["expected_loss_model_card_sensor"], "nothing evaluated yet")
    assert _skipped(ticks["credit_default_drift_sensor"], "no drift report")

    # The requested card run happens; the next tick has nothing left to do.
    defs.resolve_job_def(model_card_job_name(credit)).execute_in_process(instance=instance)
    again = ticker.sensor("credit_default_model_card_sensor")
    assert _skipped(again, "no new evaluation since the last card")
    # A sensor started after `lifecycle run` wrote the card itself does not write it twice.
    ticker.cursors.pop("credit_default_model_card_sensor")
    assert _skipped(ticker.sensor("credit_default_model_card_sensor"), "already has its card")

    # New traffic: yesterday's prediction log and a drifted drift report.
    drift_key = names.key(credit.name, names.DRIFT_REPORT)
    defs.resolve_job_def(monitoring_job_name(credit)).execute_in_process(
        partition_key=YESTERDAY,
        instance=instance,
        asset_selection=[names.key(credit.name, names.PREDICTION_LOG)],
    )
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            drift_key,
            partition=YESTERDAY,
            metadata={"drifted": True, "drifted_features": ["income"]},
        )
    )
    ticks = ticker.every()
    drift = ticks["credit_default_drift_sensor"]
    # v1 was trained on the whole window and nothing newer has landed: a retrain would register
    # nothing, so the drift waits for newer data, cooldown unspent (test_sensors_drift_window).
    assert _skipped(drift, "the training window holds only v1's training set")
    assert "income" in drift.skip_message and "land newer labelled data" in drift.skip_message
    waiting = ticker.sensor("credit_default_drift_sensor")
    assert _skipped(waiting, "no feature partition materialized since")


def test_canary_analysis_runs_after_each_new_prediction_log(spec, lifecycle_env) -> None:
    defs = build_definitions([spec])
    instance = dg.DagsterInstance.get()
    canary = names.key(spec.name, names.CANARY_ANALYSIS)
    selection = dg.AssetSelection.assets(canary)
    sensor = defs.get_repository_def().get_sensor_def(f"{spec.name}_automation_sensor")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    first = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection
    )
    assert first.total_requested == 0, "no prediction log yet: nothing to judge"

    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    defs.resolve_job_def(monitoring_job_name(spec)).execute_in_process(
        partition_key=yesterday,
        instance=instance,
        asset_selection=[names.key(spec.name, names.PREDICTION_LOG)],
    )
    second = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=first.cursor
    )
    assert second.get_requested_partitions(canary) == {yesterday}

    third = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=second.cursor
    )
    assert third.total_requested == 0, "one analysis per new prediction log"


def test_the_monitoring_schedule_skips_its_first_day(spec: ModelSpec) -> None:
    """On the model's first day, "yesterday" is no partition: the tick skips and says why
    instead of failing with an unknown partition (what the daemon would record)."""
    defs = build_definitions([spec])
    repo = defs.get_repository_def()
    first = dt.datetime.combine(spec.start_date, dt.time(6, 0), tzinfo=dt.UTC)
    schedule = repo.get_schedule_def(f"{spec.name}_daily_monitoring_schedule")
    with dg.instance_for_test() as instance:

        def tick(when: dt.datetime):
            context = dg.build_schedule_context(
                instance=instance, scheduled_execution_time=when, repository_def=repo
            )
            return schedule.evaluate_tick(context)

        skipped = tick(first)
        assert not skipped.run_requests and "before" in (skipped.skip_message or "")
        (request,) = tick(first + dt.timedelta(days=1)).run_requests
        assert request.partition_key == spec.start_date.isoformat()
