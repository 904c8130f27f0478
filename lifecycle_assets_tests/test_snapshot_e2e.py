"""Data without a timestamp, with a `Yes`/`No` target and a boolean column, runs end to end in
snapshot mode: one content-addressed partition, a seeded stratified split, the same gates,
registry, service (JSON `true`/`false` for the boolean) and `trace`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import polars as pl
import pytest
from click.testing import CliRunner

from lifecycle_assets.cli import main
from lifecycle_assets.cli.lifecycle import run_lifecycle
from lifecycle_assets.config import Settings
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.lifecycle_run import PROMOTED
from lifecycle_assets.ml import gates
from lifecycle_assets.spec import load_spec
from lifecycle_assets_tests.test_data_gates_units import members_frame, write_csv
from lifecycle_assets_tests.test_hot_swap import wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, serving

pytestmark = pytest.mark.e2e

SPEC = """\
name: snapshot_members
source: {{uri: {csv}}}
target: left
positive_label: "Yes"
sensitive_attribute: gender
start_date: 2026-03-02
features:
  - {{name: tenure, type: numeric, min: 0}}
  - {{name: spend, type: numeric, nullable: true}}
  - {{name: plan, type: categorical, categories: [Basic, Plus, Pro]}}
  - {{name: is_member, type: categorical, categories: ["False", "True"]}}
  - {{name: gender, type: categorical, categories: [Female, Male], model_input: false}}
estimator: {{kind: hist_gradient_boosting, params: {{max_iter: 60}}}}
"""


def _trace(prediction_id: str) -> dict | None:
    result = CliRunner().invoke(main, ["trace", prediction_id, "--json"])
    return json.loads(result.stdout) if result.exit_code == 0 else None


def test_a_snapshot_without_timestamps_is_promoted_served_and_traced(
    lifecycle_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = members_frame(days=6, rows_per_day=300).drop("event_time")
    csv = write_csv(frame, tmp_path / "members.csv")
    spec_file = tmp_path / "snapshot.yaml"
    spec_file.write_text(SPEC.format(csv=csv))
    spec = load_spec(spec_file)
    assert spec.is_snapshot
    monkeypatch.setenv("LIFECYCLE_SPECS", str(spec_file))

    [summary] = run_lifecycle(str(spec_file), as_json=True)
    assert summary.outcome == PROMOTED and summary.champion_version == "1", summary.failure
    assert summary.ingest.ingested == ["2026-03-02"]
    assert {g["name"] for g in summary.gates if g["passed"]} >= set(gates.GATE_NAMES)
    lake = Lake(lifecycle_env.lake_dir, lifecycle_env.quarantine_dir, spec.name)
    [manifest_file] = (lake.root / "training_sets" / "manifests").glob("*.json")
    manifest = json.loads(manifest_file.read_text())
    assert manifest["split"].startswith("stratified random")
    stats = manifest["split_stats"]
    rates = {s: stats[s]["positives"] / stats[s]["rows"] for s in stats}
    assert max(rates.values()) - min(rates.values()) < 0.01, rates  # stratified
    assert stats["test"]["rows"] == pytest.approx(0.2 * frame.height, abs=2)
    record = lake.batch("2026-03-02")
    assert record.fingerprint["source"], "the partition records the file's content hash"

    env = {"LIFECYCLE_SPECS": str(spec_file), "LIFECYCLE_MODEL_SOURCE": "registry"}
    with serving(SERVICE, tmp_path, **env) as url:
        record = {"tenure": 3, "spend": 80.5, "plan": "Basic", "is_member": False}
        response = httpx.post(
            f"{url}/models/{spec.name}/predict", json={"records": [record]}, timeout=10
        )
        assert response.status_code == 200, response.text
        answer = response.json()["predictions"][0]
        trace = wait_for(lambda: _trace(answer["prediction_id"]), 20.0)
    assert trace["ok"], [link for link in trace["links"] if link["status"] != "ok"]
    raw = [link for link in trace["links"] if link["kind"] == "raw_batch"]
    assert len(raw) == 1 and raw[0]["details"]["source"].startswith(str(csv))
    assert pl.read_csv(csv).height == frame.height
