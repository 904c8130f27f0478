"""What a new user does with only the README: write a spec for their own CSV file, run the
lifecycle on it from the command line, serve it and trace one of its predictions back to the
CSV batch it learned from. Everything runs through the real `lifecycle` and `bentoml` commands."""

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets_tests.log_rows import logged_lines
from lifecycle_assets_tests.test_hot_swap import wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, serving

pytestmark = pytest.mark.e2e

LIFECYCLE = str(Path(sys.executable).with_name("lifecycle"))
DAYS, ROWS_PER_DAY = 14, 160

SPEC = """\
name: churn
description: Probability that a customer leaves within 30 days.
source:
  uri: {csv}
target: churned
timestamp: event_time
sensitive_attribute: gender
id_column: customer_id
start_date: 2026-02-01
end_date: 2026-02-14
features:
  - {{name: tenure_months, type: numeric, min: 0}}
  - {{name: monthly_charges, type: numeric, min: 0, nullable: true}}
  - {{name: support_calls, type: numeric, min: 0}}
  - {{name: plan, type: categorical, categories: [basic, plus, pro]}}
  - {{name: gender, type: categorical, categories: [female, male], model_input: false}}
derived_features:
  - {{name: charges_per_tenure_month, op: ratio, inputs: [monthly_charges, tenure_months]}}
estimator: {{kind: hist_gradient_boosting, params: {{max_iter: 100}}}}
training: {{window_days: 14}}
"""


def write_churn_csv(path: Path) -> None:
    """Two weeks of customers whose churn depends on tenure, charges, calls and plan."""
    rng = np.random.default_rng(11)
    n = DAYS * ROWS_PER_DAY
    tenure = rng.integers(1, 72, n).astype(float)
    charges = rng.normal(70, 25, n).clip(10, 200).round(2)
    calls = rng.poisson(1.5, n).astype(float)
    plan = rng.choice(["basic", "plus", "pro"], n)
    logit = (
        -0.8 - 0.05 * (tenure - 24) + 0.02 * (charges - 70) + 0.5 * calls - 0.6 * (plan == "pro")
    )
    start = dt.datetime(2026, 2, 1)
    pl.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "event_time": [
                start + dt.timedelta(seconds=int(s)) for s in np.arange(n) * 86400 // ROWS_PER_DAY
            ],
            "tenure_months": tenure,
            "monthly_charges": pl.Series(np.where(rng.random(n) < 0.03, np.nan, charges)).fill_nan(
                None
            ),
            "support_calls": calls,
            "plan": plan,
            "gender": rng.choice(["female", "male"], n),
            "churned": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    ).write_csv(path)


def lifecycle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LIFECYCLE, *args], capture_output=True, text=True, timeout=600)


def test_a_new_csv_dataset_runs_serves_and_traces(lifecycle_env: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data" / "churn.csv"
    data.parent.mkdir()
    write_churn_csv(data)
    spec_file = tmp_path / "churn.yaml"
    spec_file.write_text(SPEC.format(csv=data))

    run = lifecycle("run", "--spec", str(spec_file), "--json")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["model_name"] == "churn" and summary["promoted"], summary["failure"]
    assert summary["champion_version"] == "1"
    assert len(summary["ingest"]["ingested"]) == DAYS
    assert summary["metrics"]["roc_auc"] > 0.7

    env = {"LIFECYCLE_SPECS": str(spec_file), "LIFECYCLE_MODEL_SOURCE": "registry"}
    with serving(SERVICE, tmp_path, **env) as url:
        record = {
            "customer_id": "new-customer-1",
            "tenure_months": 3,
            "monthly_charges": 95.5,
            "support_calls": 4,
            "plan": "basic",
            "gender": "female",
        }
        response = httpx.post(f"{url}/models/churn/predict", json={"records": [record]}, timeout=10)
        assert response.status_code == 200, response.text
        answer = response.json()["predictions"][0]
        assert answer["model_name"] == "churn" and answer["record_id"] == "new-customer-1"
        wait_for(
            lambda: any(
                row["prediction_id"] == answer["prediction_id"]
                for row in logged_lines(lifecycle_env.prediction_log_dir, "churn")
            ),
            10.0,
        )

    traced = lifecycle("trace", answer["prediction_id"], "--json")
    assert traced.returncode == 0, traced.stdout[-3000:] + traced.stderr[-3000:]
    trace = json.loads(traced.stdout)
    assert trace["ok"], [link for link in trace["links"] if link["status"] != "ok"]
    raw = [link for link in trace["links"] if link["kind"] == "raw_batch"]
    assert len(raw) == DAYS
    assert all(link["details"]["source"].startswith(str(data)) for link in raw)
    assert all(link["status"] == "ok" for link in trace["links"])
