"""The default two-model project (a classifier and a regressor) end to end: both are ingested,
trained, gated and promoted on a real Dagster instance, get a model card, and one Bento serves
both champions, each under its own route, without the registry. The regressor's traffic then
closes the loop (prediction log, drift, amount labels, realized errors), and the portfolio
scorecard shows both models."""

import datetime as dt
import json
import os
from pathlib import Path

import dagster as dg
import httpx
import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets.data.ground_truth import labels_folder
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.data.traffic import simulate_traffic
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.assets.portfolio import SCORECARD_JOB
from lifecycle_assets.defs.jobs import monitoring_job_name
from lifecycle_assets.lifecycle_run import ingest_window, train_and_deploy
from lifecycle_assets.ml import gates
from lifecycle_assets.spec import ModelSpec, configured_specs
from lifecycle_assets_tests.test_http_service import mock_environ, sample_records, serving

pytestmark = pytest.mark.e2e


def _short(spec: ModelSpec) -> ModelSpec:
    """The built-in spec on a 20-day window: the same models, a third of the ingest work."""
    return spec.model_copy(
        update={"training": spec.training.model_copy(update={"window_days": 20})}
    )


def test_default_project_gates_promotes_and_serves_both_models(
    lifecycle_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIFECYCLE_SPECS", raising=False)
    specs = [_short(spec) for spec in configured_specs()]
    assert [(s.name, s.task) for s in specs] == [
        ("credit_default", "binary_classification"),
        ("expected_loss", "regression"),
    ]
    defs = build_definitions(specs)
    instance = dg.DagsterInstance.get()
    summaries = {
        spec.name: train_and_deploy(defs, spec, instance, ingest_window(defs, spec, instance))
        for spec in specs
    }

    for spec in specs:
        summary = summaries[spec.name]
        assert summary.failure is None, summary.failure
        assert summary.promoted and summary.champion_version == "1"
        assert {g["name"] for g in summary.gates} == set(gates.gate_names(spec.task))
        assert all(g["passed"] for g in summary.gates)
        assert Path(summary.model_card).read_text().lower().startswith("<!doctype html>")
    assert summaries["credit_default"].metrics["roc_auc"] > 0.7
    regression = summaries["expected_loss"]
    assert regression.metrics["r2"] >= specs[1].gate_thresholds().min_r2
    gate = next(g for g in regression.gates if g["name"] == gates.R2_GATE)
    assert gate["threshold"] == pytest.approx(0.20), "the spec's own gate floor applies"

    # The last Bento built carries both champions and serves them with no registry at all.
    bento_tag = summaries["expected_loss"].bento_tag
    env = {k: v for k, v in os.environ.items() if k != "LIFECYCLE_MODEL_SOURCE"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'nowhere' / 'gone.db'}"
    with mock_environ(env), serving(bento_tag, tmp_path) as url, httpx.Client(base_url=url) as c:
        listed = c.get("/models").json()
        assert set(listed["models"]) == {"credit_default", "expected_loss"}
        answers = {}
        for spec in specs:
            body = json.dumps({"records": sample_records(spec, 5)})
            response = c.post(f"/models/{spec.name}/predict", content=body)
            assert response.status_code == 200, response.text
            answers[spec.name] = response.json()["predictions"]
            metadata = c.get(f"/models/{spec.name}/metadata").json()
            assert (metadata["source"], metadata["model_version"]) == ("bento", "1")
        missing = c.post("/models/churn/predict", content=body)
        assert missing.status_code == 404 and "credit_default" in missing.json()["error"]
        # Production traffic for the regressor; its loss amounts come back as labels at once.
        loss = specs[1]
        traffic, _ = simulate_traffic(
            url,
            [(dt.date(2026, 3, 2), simulate_day(dt.date(2026, 3, 2), rows_per_day=300))],
            loss,
            labels_dir=labels_folder(lifecycle_env.landing_dir, loss.name),
            log_dirs=[lifecycle_env.prediction_log_spool_dir],
            label_delay=dt.timedelta(0),
        )
        assert traffic.height == 300

    for row in answers["credit_default"]:
        assert row["prediction"] in (0, 1) and 0.0 <= row["probability"] <= 1.0
        assert row["model_name"] == "credit_default"
    for row in answers["expected_loss"]:
        assert "probability" not in row and row["prediction"] >= 0.0
        assert row["model_name"] == "expected_loss"

    today = dt.datetime.now(dt.UTC).date().isoformat()
    monitoring = defs.resolve_job_def(monitoring_job_name(specs[1])).execute_in_process(
        instance=instance, partition_key=today
    )
    assert monitoring.success
    drift = monitoring.output_for_node("expected_loss__drift_report")
    # The 5 records answered above plus the 300 of simulated traffic, all of today.
    assert drift["rows"] == 305 and drift["drifted"] is False, drift.get("drifted_features")
    live = monitoring.output_for_node("expected_loss__live_performance")
    realized = live["overall"]["realized"]
    assert (live["rows"], live["labelled_rows"]) == (305, 300)
    assert live["overall"]["estimated"] is None
    assert realized["mae"] > 0 and realized["r2"] is not None

    scorecard = defs.resolve_job_def(SCORECARD_JOB).execute_in_process(instance=instance)
    rows = {
        row["model"]: row
        for row in scorecard.output_for_node("portfolio__health_scorecard")["rows"]
    }
    assert set(rows) == {"credit_default", "expected_loss"}
    assert rows["expected_loss"]["metric"] == "r2" and rows["expected_loss"]["requests"] >= 300
    assert (
        rows["credit_default"]["metric"] == "roc_auc" and rows["credit_default"]["champion"] == "v1"
    )
