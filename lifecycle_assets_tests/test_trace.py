"""`lifecycle trace` and `lifecycle lineage` on a real lifecycle and a real `bentoml serve`.

One module-scoped project (a 12-day window of the credit_default spec, trained, gated, promoted,
served over HTTP) is shared by every test here: the lifecycle run is the expensive part (about
15 s), and each test leaves the project as it found it.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import polars as pl
import pytest
from click.testing import CliRunner, Result

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.data.lake import PREDICTION_LOGS, Lake
from lifecycle_assets.data.prediction_log import read_day
from lifecycle_assets.lifecycle_run import LifecycleSummary
from lifecycle_assets.provenance.trace import trace_prediction
from lifecycle_assets.registry.artifacts import sha256_file
from lifecycle_assets.registry.models import download_model
from lifecycle_assets.registry.refs import ModelRef, get_version
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import ModelSpec, default_spec
from lifecycle_assets_tests.log_rows import append_log_rows, logged_lines
from lifecycle_assets_tests.test_hot_swap import wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, post, sample_records, serving
from lifecycle_assets_tests.test_lifecycle_e2e import _run, _small

pytestmark = pytest.mark.e2e

WINDOW_DAYS = 12  # the smallest window whose simulated test split passes the AUC gate with margin


@dataclass(frozen=True)
class ServedProject:
    settings: Settings
    spec: ModelSpec
    summary: LifecycleSummary
    records: list[dict[str, Any]]
    answers: list[dict[str, Any]]
    metadata: dict[str, Any]  # the service's `/metadata` while it served

    @property
    def lake(self) -> Lake:
        return Lake(self.settings.lake_dir, self.settings.quarantine_dir, self.spec.name)

    @property
    def training_digest(self) -> str:
        client = configure_mlflow(self.settings)
        return get_version(client, self.spec.name, "1").training_digest


def _logged_ids(settings: Settings, spec: ModelSpec) -> set[str]:
    return {row["prediction_id"] for row in logged_lines(settings.prediction_log_dir, spec.name)}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProject]:
    """Run the lifecycle, serve the champion, answer three records over HTTP."""
    root = tmp_path_factory.mktemp("trace")
    (root / "dagster_home").mkdir()
    # The same stores as conftest's `lifecycle_env`, which is function-scoped.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(root / "home"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("LIFECYCLE_MLFLOW_ARTIFACT_ROOT", (root / "mlartifacts").as_uri())
        mp.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        settings = Settings.from_env()
        configure_mlflow(settings)
        small = _small(default_spec())
        spec = small.model_copy(
            update={"training": small.training.model_copy(update={"window_days": WINDOW_DAYS})}
        )
        summary, _ = _run(spec)
        assert summary.promoted, summary.failure
        records = sample_records(spec, 3)
        with (
            serving(SERVICE, root, LIFECYCLE_MODEL_SOURCE="registry") as url,
            httpx.Client(base_url=url, timeout=10) as client,
        ):
            response = post(client, records)
            assert response.status_code == 200, response.text
            answers = response.json()["predictions"]
            # The log row is written just after the answer goes out.
            wanted = {a["prediction_id"] for a in answers}
            wait_for(lambda: wanted <= _logged_ids(settings, spec))
            metadata = client.get("/metadata").json()
        yield ServedProject(settings, spec, summary, records, answers, metadata)
        mlflow.end_run()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def trace_json(prediction_id: str, exit_code: int = 0) -> dict[str, Any]:
    result = invoke("trace", prediction_id, "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def links_of(trace: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [link for link in trace["links"] if link["kind"] == kind]


def test_trace_walks_a_served_prediction_back_to_every_raw_batch(project: ServedProject) -> None:
    answer, record = project.answers[0], project.records[0]
    trace = trace_json(answer["prediction_id"])
    assert trace["ok"], [link for link in trace["links"] if link["status"] != "ok"]
    assert {link["status"] for link in trace["links"]} == {"ok"}
    assert [link["kind"] for link in trace["links"][:6]] == [
        "prediction", "model_version", "promotion", "evaluation", "mlflow_run", "training_set",
    ]  # fmt: skip

    (prediction,) = links_of(trace, "prediction")
    details = prediction["details"]
    assert (details["model_name"], details["model_version"]) == (project.spec.name, "1")
    assert details["variant"] == answer["variant"] == config.CHAMPION_ALIAS
    assert details["record_id"] == record[project.spec.id_column]
    assert details["inputs"] == {f.name: record[f.name] for f in project.spec.features}
    outputs = details["outputs"]
    assert outputs["prediction"] == answer["prediction"]
    score = outputs.get("score", outputs.get("probability"))
    assert score == pytest.approx(answer.get("score", answer.get("probability")))

    # The version: its artifact, downloaded again here, hashes to the registered SHA-256.
    client = configure_mlflow(project.settings)
    ref = get_version(client, project.spec.name, "1")
    (version,) = links_of(trace, "model_version")
    local = download_model(ref, project.settings.home / "check") / config.SKOPS_FILE
    assert version["details"]["actual_sha256"] == sha256_file(local) == ref.artifact_sha256

    (promotion,) = links_of(trace, "promotion")
    (move,) = promotion["details"]["moves"]
    assert (move["alias"], move["to_version"]) == (config.CHAMPION_ALIAS, "1")
    assert move["dagster_run_id"] == project.summary.training_run_id
    (evaluation,) = links_of(trace, "evaluation")
    assert evaluation["details"]["source"] == f"runs:/{ref.run_id}/evaluation/evaluation.json"
    assert {g["name"] for g in evaluation["details"]["gates"]} == {
        g["name"] for g in project.summary.gates
    }
    assert all(g["passed"] for g in evaluation["details"]["gates"])
    (run,) = links_of(trace, "mlflow_run")
    assert run["id"] == ref.run_id
    assert run["details"]["dagster_run_id"] == project.summary.training_run_id
    assert run["details"]["git_commit"] and run["details"]["params"]["window_days"] == "12"

    # The data: every file re-hashed here, against the digests the lake and registry recorded.
    (training,) = links_of(trace, "training_set")
    manifest = project.lake.training_manifest(ref.training_digest)
    assert training["id"] == ref.training_digest == sha256_file(training["details"]["path"])
    raws = links_of(trace, "raw_batch")
    assert len(raws) == len(links_of(trace, "features")) == WINDOW_DAYS
    assert {r["details"]["day"]: r["details"]["sha256"] for r in raws} == manifest["raw_batches"]
    for raw in raws:
        day, path = raw["details"]["day"], Path(raw["details"]["path"])
        assert raw["details"]["sha256"] == sha256_file(path) == project.lake.batch(day).sha256
        assert raw["details"]["source"] == project.lake.batch(day).source
        assert raw["details"]["source"].startswith("simulator://")
        assert raw["details"]["validation_passed"] is True
    for features in links_of(trace, "features"):
        assert features["details"]["sha256"] == sha256_file(features["details"]["path"])

    readable = invoke("trace", answer["prediction_id"])
    assert readable.exit_code == 0 and "every link checked" in readable.output


def test_metadata_names_the_bento_built_for_the_served_version(project: ServedProject) -> None:
    """Served from the registry, `/metadata` names the Bento `bento_service` built for the
    version (its `bento_tag` tag), not null."""
    client = configure_mlflow(project.settings)
    tagged = get_version(client, project.spec.name, "1").tags.get(config.TAG_BENTO_TAG)
    assert tagged and tagged == project.summary.bento_tag
    assert (project.metadata["source"], project.metadata["model_version"]) == ("registry", "1")
    assert project.metadata["bento_tag"] == tagged


def test_a_tampered_raw_batch_is_the_one_broken_link(project: ServedProject) -> None:
    day = sorted(project.lake.training_manifest(project.training_digest)["raw_batches"])[5]
    record = project.lake.batch(day)
    path, original = Path(record.path), Path(record.path).read_bytes()
    path.write_bytes(original + b"\0")
    try:
        trace = trace_json(project.answers[1]["prediction_id"], exit_code=1)
        readable = invoke("trace", project.answers[1]["prediction_id"])
        lineage = invoke("lineage", project.spec.name, "1", "--format", "dot")
    finally:
        path.write_bytes(original)
    assert not trace["ok"]
    (broken,) = [link for link in trace["links"] if link["status"] != "ok"]
    assert broken["kind"] == "raw_batch" and broken["details"]["day"] == day
    assert broken["status"] == "broken"
    assert "hash mismatch" in broken["reason"] and record.sha256 in broken["reason"]
    assert broken["details"]["actual_sha256"] != record.sha256
    assert readable.exit_code == 1 and "broken" in readable.output
    assert lineage.exit_code == 1 and f"broken: raw_batch:{day}/{record.sha256}" in lineage.stderr
    assert '"#c00000"' in lineage.stdout  # the broken node is drawn red
    # Restored, the chain holds again.
    assert trace_json(project.answers[1]["prediction_id"])["ok"]


def test_an_unknown_prediction_is_missing(project: ServedProject) -> None:
    trace = trace_json("0" * 32, exit_code=1)
    (link,) = trace["links"]
    assert (link["kind"], link["status"]) == ("prediction", "missing")


def test_a_prediction_rotated_out_of_the_log_is_found_in_the_lake(
    project: ServedProject,
) -> None:
    """The daily prediction_log table in the lake is the fallback once the log files are gone,
    for the trace and for the lineage's count of predictions alike."""
    answer, record = project.answers[2], project.records[2]
    log_dir = project.settings.prediction_log_dir / project.spec.name
    (logged,) = [
        row
        for row in logged_lines(project.settings.prediction_log_dir, project.spec.name)
        if row["prediction_id"] == answer["prediction_id"]
    ]
    day = dt.date.fromisoformat(logged["predicted_at"][:10])
    rows = read_day(project.settings, project.spec.name, day)
    entry = project.lake.store_daily(PREDICTION_LOGS, day.isoformat(), rows)
    moved = project.settings.home / "rotated-away"  # outside the log folder: gone for trace
    log_dir.rename(moved)
    table = Path(entry["path"])
    manifest = project.lake.root / PREDICTION_LOGS / "manifests" / f"{day.isoformat()}.json"
    try:
        trace = trace_json(answer["prediction_id"])
        lineage = invoke("lineage", project.spec.name, "1")
        # An edited answer: still valid Parquet, but no longer the bytes the lake recorded.
        pl.read_parquet(table).with_columns(prediction=1 - pl.col("prediction")).write_parquet(
            table
        )
        tampered = trace_json(answer["prediction_id"], exit_code=1)
        tampered_lineage = invoke("lineage", project.spec.name, "1")
    finally:
        moved.rename(log_dir)
        # The lake held no prediction table before this test; leave it so.
        table.unlink()
        manifest.unlink()
    (prediction,) = links_of(trace, "prediction")
    assert trace["ok"] and prediction["details"]["log"] == entry["path"]
    inputs = {f.name: record[f.name] for f in project.spec.features}
    assert prediction["details"]["inputs"] == inputs
    (broken,) = [link for link in tampered["links"] if link["status"] != "ok"]
    assert broken["kind"] == "prediction" and "hash mismatch" in broken["reason"]

    assert lineage.exit_code == 0, lineage.output
    served = [n for n in json.loads(lineage.stdout)["nodes"] if n["kind"] == "predictions"]
    answered_by_v1 = rows.filter(pl.col("model_version").cast(pl.String) == "1").height
    assert [(n["id"], n["details"]["count"]) for n in served] == [
        (f"predictions:{day.isoformat()}", answered_by_v1)
    ]
    assert tampered_lineage.exit_code == 1
    assert f"broken: predictions:{day.isoformat()}: hash mismatch" in tampered_lineage.stderr


def test_lineage_connects_every_raw_batch_to_the_predictions(
    project: ServedProject, tmp_path: Path
) -> None:
    out = tmp_path / "lineage.json"
    result = invoke("lineage", project.spec.name, "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    graph = json.loads(out.read_text())
    assert graph["ok"] and (graph["model"], graph["version"]) == (project.spec.name, "1")
    nodes = {node["id"]: node for node in graph["nodes"]}
    downstream: dict[str, set[str]] = {}
    for edge in graph["edges"]:
        assert edge["from"] in nodes and edge["to"] in nodes
        downstream.setdefault(edge["from"], set()).add(edge["to"])

    (served,) = [n for n in nodes.values() if n["kind"] == "predictions"]
    assert served["details"]["count"] == len(project.answers)
    assert served["details"]["variants"] == [config.CHAMPION_ALIAS]
    ids = {a["prediction_id"] for a in project.answers}
    assert {
        served["details"]["first_prediction_id"],
        served["details"]["last_prediction_id"],
    } <= ids

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            if current == goal:
                return True
            seen.add(current)
            todo += [n for n in downstream.get(current, ()) if n not in seen]
        return False

    raws = [n for n in nodes if nodes[n]["kind"] == "raw_batch"]
    assert len(raws) == WINDOW_DAYS
    assert all(reaches(raw, served["id"]) for raw in raws)
    promotions = nodes[f"model_version:{project.spec.name}/v1"]["details"]["promotions"]
    assert [p["to_version"] for p in promotions] == ["1"]

    dot = invoke("lineage", project.spec.name, "1", "--format", "dot")
    assert dot.exit_code == 0
    assert dot.stdout.startswith("digraph lineage {") and dot.stdout.rstrip().endswith("}")
    assert dot.stdout.count(" -> ") == len(graph["edges"])


def test_provenance_needs_no_dagster() -> None:
    """The CLI and scripts audit without loading the code location."""
    code = "import sys, lifecycle_assets.provenance; assert 'dagster' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_version_registered_outside_the_pipeline_has_missing_links(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec
) -> None:
    """No evaluation and no training set in the lake: reported missing, not assumed."""
    row = {
        **{f.name: None for f in spec.features},
        "score": 0.3, "prediction": 0, "prediction_id": "p-1", "record_id": "r-1",
        "model_name": spec.name, "model_version": registered_champion.version,
        "variant": config.CHAMPION_ALIAS, "shadow_of": None, "training_digest": "test-digest",
        "predicted_at": dt.datetime.now(dt.UTC).isoformat(),
    }  # fmt: skip
    append_log_rows(lifecycle_env.prediction_log_dir, spec.name, [row])

    trace = trace_prediction("p-1", lifecycle_env)
    assert {link.kind: link.status for link in trace.links} == {
        "prediction": "ok", "model_version": "ok", "promotion": "ok",
        "evaluation": "missing", "mlflow_run": "ok", "training_set": "missing",
    }  # fmt: skip
    assert not trace.ok
    (prediction,) = trace.of_kind("prediction")
    # Inputs are the columns that are not bookkeeping.
    assert set(prediction.details["inputs"]) == {f.name for f in spec.features}
    assert prediction.details["outputs"] == {"score": 0.3, "prediction": 0}


def test_the_cli_reads_link_kinds_without_loading_mlflow() -> None:
    """Every `lifecycle` command imports the link vocabulary; it must stay cheap to import."""
    code = (
        "import sys, lifecycle_assets.provenance.links; "
        "print(sorted(m for m in ('mlflow', 'polars', 'skops') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "[]", loaded.stderr
