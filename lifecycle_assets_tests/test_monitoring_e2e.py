"""The closed loop on the simulator: served traffic -> prediction log -> drift report -> sensor."""

import datetime as dt
import json
import uuid

import dagster as dg
import pytest

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.data.simulator import ShiftKnobs, simulate_day
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.defs.jobs import monitoring_job_name, training_job_name
from lifecycle_assets.ml.features import compute_features
from lifecycle_assets.ml.training import predict_scores
from lifecycle_assets.registry.models import load_version
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets_tests.log_rows import append_log_rows
from lifecycle_assets_tests.test_lifecycle_e2e import _run, _small

pytestmark = pytest.mark.e2e


def serve_day(settings: Settings, spec, day: dt.date, shift: ShiftKnobs) -> None:
    """Score a simulated day with the champion and log it as the service does."""
    champion = load_version(resolve(configure_mlflow(settings), spec.name, config.CHAMPION_ALIAS))
    rows = simulate_day(day, seed=7, rows_per_day=500, shift=shift)
    scores = predict_scores(champion.pipeline, compute_features(rows, spec), spec)
    start = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
    lines = [
        {
            **record,
            "score": float(score),
            "prediction": int(score >= 0.5),
            "prediction_id": uuid.uuid4().hex,
            "record_id": rows["application_id"][i],
            "model_name": spec.name,
            "model_version": champion.ref.version,
            "training_digest": champion.ref.training_digest,
            "predicted_at": start + dt.timedelta(seconds=i),
        }
        for i, (record, score) in enumerate(
            zip(rows.select(f.name for f in spec.features).to_dicts(), scores, strict=True)
        )
    ]
    append_log_rows(settings.prediction_log_dir, spec.name, lines)


def test_drift_triggers_one_retraining_and_gates_decide(spec, lifecycle_env) -> None:
    small = _small(spec)
    first, instance = _run(small)
    assert first.promoted
    defs = build_definitions([small])
    monitoring = defs.resolve_job_def(monitoring_job_name(small))
    sensor = defs.get_sensor_def(f"{small.name}_drift_sensor")

    def tick(cursor):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        return sensor.evaluate_tick(context)

    days = [dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 4)]
    serve_day(lifecycle_env, small, days[0], ShiftKnobs())
    assert monitoring.execute_in_process(
        partition_key=days[0].isoformat(), instance=instance
    ).success
    stable = tick(None)
    assert not stable.run_requests and "no drift" in stable.skip_message

    serve_day(lifecycle_env, small, days[1], ShiftKnobs(covariate=1.0))
    result = monitoring.execute_in_process(partition_key=days[1].isoformat(), instance=instance)
    report = result.output_for_node(f"{small.name}__drift_report")
    assert report["drifted"] and "credit_score" in report["drifted_features"]
    assert "age" not in report["drifted_features"]
    assert (lifecycle_env.reports_dir / small.name / "drift" / "2026-11-03.html").exists()
    warning = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_data_drift"]
    assert warning and not warning[0].passed and warning[0].severity == dg.AssetCheckSeverity.WARN

    # The lake holds no day newer than v1's training set: a retrain would register nothing, so
    # the drift waits for newer data instead of spending the cooldown on a green no-op run.
    waiting = tick(stable.cursor)
    assert not waiting.run_requests
    assert "drift on 2026-11-03" in waiting.skip_message
    assert "holds only v1's training set" in waiting.skip_message
    assert "triggered_at" not in json.loads(waiting.cursor)
    again = tick(waiting.cursor)
    assert not again.run_requests and "land newer labelled data" in again.skip_message

    serve_day(lifecycle_env, small, days[2], ShiftKnobs(covariate=1.0))
    monitoring.execute_in_process(partition_key=days[2].isoformat(), instance=instance)
    still = tick(again.cursor)
    assert not still.run_requests and "drift on 2026-11-04" in still.skip_message
    assert "cooldown lasts" not in still.skip_message

    # The retrain it held back, run by hand, agrees: its training set is the champion's,
    # nothing changed, no new version, `champion` stays (README: nothing changed).
    retrain = defs.resolve_job_def(training_job_name(small)).execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert retrain.success
    trained = [
        event
        for event in retrain.get_asset_materialization_events()
        if event.asset_key.path[-1] == names.TRAINED_MODEL
    ]
    assert not trained
    champion = resolve(configure_mlflow(lifecycle_env), small.name, config.CHAMPION_ALIAS)
    assert champion.version == "1"
