"""The shipped Prometheus and Grafana files refer only to metrics the service exports."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Metric families `/metrics` serves (asserted against a live service in test_http_service).
EXPORTED = {
    "lifecycle_predictions_total",
    "lifecycle_prediction_score_bucket",
    "lifecycle_rejected_requests_total",
    "lifecycle_prediction_log_failures_total",
    "lifecycle_feature_drift_psi",
    "lifecycle_drift_detected",
    "bentoml_service_request_duration_seconds_bucket",
    "bentoml_service_request_duration_seconds_count",
}


def test_dashboard_queries_use_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "monitoring/grafana/lifecycle-dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b((?:lifecycle|bentoml)_[a-z_]+)", target["expr"]))
    assert used, "the dashboard queries something"
    assert used <= EXPORTED, used - EXPORTED


def test_prometheus_scrapes_the_service_on_loopback() -> None:
    config = yaml.safe_load((ROOT / "monitoring/prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:3001"]
