"""The shipped Prometheus and Grafana files: only metrics the service exports, panels by model
and route, and alert rules that promtool accepts and whose unit tests pass."""

import json
import re
import shutil
import subprocess
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
    "lifecycle_model_swap_failures_total",
    "bentoml_service_request_duration_seconds_bucket",
    "bentoml_service_request_duration_seconds_count",
}


MONITORING = ROOT / "monitoring"
ROUTES = ("/models/credit_default/predict", "/models/expected_loss/predict", "/predict")


def _dashboard() -> dict:
    return json.loads((MONITORING / "grafana/lifecycle-dashboard.json").read_text())


def _promtool(*args: str) -> str:
    """promtool from Debian's `prometheus` package (.ci/run installs it)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus"
    result = subprocess.run(
        [promtool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_dashboard_queries_use_exported_metrics() -> None:
    dashboard = _dashboard()
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


def test_dashboard_has_a_model_variable_and_every_route() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "model_name" in variables["model"]["definition"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            if "bentoml_service_request" in expr:
                endpoint = re.search(r'endpoint=~"([^"]+)"', expr)
                assert endpoint, f"{panel['title']}: latency and status by route"
                pattern = endpoint.group(1).replace(
                    "${model:regex}", "credit_default|expected_loss"
                )
                assert all(re.fullmatch(pattern, route) for route in ROUTES), expr
                assert "by (le, endpoint)" in expr or "by (endpoint" in expr, expr
            else:
                assert "${model:regex}" in expr, f"{panel['title']}: filtered by the model"


def test_alert_rules_pass_promtool() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    assert "7 rules found" in _promtool("check", "rules", "alerts.yml")
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert alerts == {
        "LifecycleDriftDetected",
        "LifecycleHighErrorRate",
        "LifecycleHighP99Latency",
        "LifecyclePredictionLogWriteFailures",
        "LifecycleModelSwapFailures",
        "LifecycleAdminTokenGuessing",
        "LifecycleConnectionsRefused",
    }
    # Each alert fires on the series its unit test feeds it, with the labels it names.
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested == alerts
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml")
