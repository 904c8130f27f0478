"""The service over real HTTP (`bentoml serve` in a subprocess), and its two model sources."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets.data.prediction_log import segment_files
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.bento_store import build_bento, export_version
from lifecycle_assets.serving.model_source import ModelSourceError, load_served_model
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.log_rows import logged_lines

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "lifecycle_assets.serving.service:PredictionService"
READY_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sample_records(spec: ModelSpec, n: int, day: int = 1) -> list[dict[str, Any]]:
    columns = [f.name for f in spec.features] + [spec.id_column]
    return simulate_day(dt.date(2026, 3, day), rows_per_day=n).select(columns).to_dicts()


@contextlib.contextmanager
def serving(
    target: str, tmp_path: Path, ready_seconds: float = READY_SECONDS, **env_overrides: str
) -> Iterator[str]:
    """`bentoml serve TARGET` on a free loopback port; yields its base URL once `/readyz`
    answers 200, within `ready_seconds`."""
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    log = log_path.open("wb")
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **env_overrides}
    command = [sys.executable, "-m", "bentoml", "serve", target, "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        # Generous: importing the service alone took 30 s on the shared 2-core test machine.
        deadline = time.monotonic() + ready_seconds
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"service not ready within {ready_seconds} s"
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def server(registered_champion: ModelRef, tmp_path: Path) -> Iterator[str]:
    """The project's service against the fixture's temporary registry."""
    with serving(SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry") as url:
        yield url


def post(client: httpx.Client, records: Any) -> httpx.Response:
    return client.post("/predict", content=json.dumps({"records": records}))


def bad_requests(good: dict[str, Any]) -> list[tuple[str, bytes, int, str]]:
    """(case, body, expected status, text the error must contain)."""
    missing = {k: v for k, v in good.items() if k != "credit_score"}

    def body(*records: Any) -> bytes:
        return json.dumps({"records": list(records)}).encode()

    return [
        ("malformed JSON", b'{"records": [', 400, "malformed JSON"),
        ("not an object", b"[1, 2]", 400, "records"),
        ("empty batch", body(), 422, "at least one"),
        ("too large", body(*[good] * 1001), 413, "1000"),
        ("missing field", body(missing), 422, "credit_score"),
        ("unknown field", body({**good, "shoe_size": 44}), 422, "shoe_size"),
        ("string for number", body({**good, "age": "forty"}), 422, "age"),
        ("null not nullable", body({**good, "loan_amount": None}), 422, "loan_amount"),
        ("NaN not nullable", re.sub(rb'"age": [0-9.]+', b'"age": NaN', body(good)), 422, "age"),
        ("non-string category", body({**good, "region": 7}), 422, "region"),
        ("unknown level", body({**good, "home_ownership": "houseboat"}), 422, "home_ownership"),
        ("out of range", body({**good, "credit_score": 5000}), 422, "credit_score"),
        ("huge integer", b'{"records": [{"age": ' + b"9" * 5000 + b"}]}", 422, "age"),
        ("deep nesting", b"[" * 10_000 + b"]" * 10_000, 400, "nested"),
        ("oversized body", body({**good, "region": "x" * (5 << 20)}), 413, "exceeds"),
    ]


def assert_concurrent_answers_match(
    url: str, records: list[dict[str, Any]], spec: ModelSpec
) -> None:
    """Send one to three records per request, all at once; every id must come back home."""
    chunks, start = [], 0
    while start < len(records):
        size = 1 + len(chunks) % 3
        chunks.append(records[start : start + size])
        start += size

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            return await asyncio.gather(
                *(client.post("/predict", json={"records": chunk}) for chunk in chunks)
            )

    responses = asyncio.run(send_all())
    for chunk, response in zip(chunks, responses, strict=True):
        assert response.status_code == 200, response.text
        ids = [row["record_id"] for row in response.json()["predictions"]]
        assert ids == [record[spec.id_column] for record in chunk]


@pytest.mark.e2e
def test_http_service_end_to_end(
    server: str, registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec
) -> None:
    records = sample_records(spec, 5)
    # What the drift_report asset leaves for the service to export as gauges.
    latest = lifecycle_env.reports_dir / spec.name / "drift" / "latest.json"
    latest.parent.mkdir(parents=True, exist_ok=True)
    latest.write_text(json.dumps({"day": "2026-11-01", "drifted": True, "psi": {"age": 0.31}}))
    with httpx.Client(base_url=server, timeout=10) as client:
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200

        metadata = client.get("/metadata").json()
        assert metadata["model_name"] == "credit_default"
        assert metadata["model_version"] == registered_champion.version
        assert metadata["run_id"] == registered_champion.run_id
        assert metadata["artifact_sha256"] == registered_champion.artifact_sha256
        assert metadata["training_data_digest"] == "test-digest"
        assert metadata["source"] == "registry"

        anonymous = {k: v for k, v in records[1].items() if k != spec.id_column}
        response = post(client, [records[0], anonymous, records[2]])
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert predictions[0]["record_id"] == records[0][spec.id_column]
        assert predictions[1]["record_id"] is None
        assert all(uuid.UUID(row["prediction_id"]).version == 7 for row in predictions)
        for row in predictions:
            assert row["prediction"] == int(row["probability"] >= 0.5)
            assert (row["model_name"], row["model_version"]) == ("credit_default", "1")

        # The service scores exactly as the registered model does in-process.
        loaded = load_served_model().loaded
        from lifecycle_assets.ml.features import compute_features
        from lifecycle_assets.ml.training import predict_scores

        frame = pl.DataFrame(records[:1]).drop(spec.id_column)
        expected = predict_scores(loaded.pipeline, compute_features(frame, spec), spec)
        assert predictions[0]["probability"] == pytest.approx(float(expected[0]), abs=1e-12)

        for case, body, status, text in bad_requests(records[0]):
            response = client.post("/predict", content=body)
            assert response.status_code == status, (case, response.text)
            assert text in response.text, (case, response.text)

        # Still serving after every bad request.
        response = post(client, records)
        assert response.status_code == 200
        assert len(response.json()["predictions"]) == 5

        # Concurrent requests are scored together; each must get back its own rows.
        assert_concurrent_answers_match(server, sample_records(spec, 40, day=2), spec)

        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "bentoml_" in metrics.text
        served = f'model_name="credit_default",model_version="{registered_champion.version}"'
        assert f"lifecycle_predictions_total{{{served}}} 48.0" in metrics.text
        assert f"lifecycle_prediction_score_count{{{served}}} 48.0" in metrics.text
        assert 'lifecycle_rejected_requests_total{model_name="credit_default",status="422"}' in (
            metrics.text
        )
        assert client.get("/metadata").json()["prediction_log_failures"] == 0
        assert 'lifecycle_feature_drift_psi{feature="age",model_name="credit_default"} 0.31' in (
            metrics.text
        )
        assert 'lifecycle_drift_detected{model_name="credit_default"} 1.0' in metrics.text

    # The log is written just after the answers are sent: give the last batch a moment.
    log_dir = lifecycle_env.prediction_log_dir
    deadline = time.monotonic() + 5
    while True:
        rows = logged_lines(log_dir, "credit_default")
        if len(rows) >= 8 + 40 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    logged = {row["prediction_id"]: row for row in rows}
    first = logged[predictions[0]["prediction_id"]]
    assert first["record_id"] == records[0][spec.id_column]
    assert first["model_version"] == "1"
    assert first["training_digest"] == "test-digest"
    assert first["age"] == records[0]["age"]
    assert first["score"] == predictions[0]["probability"]
    assert first["latency_ms"] > 0
    assert len(rows) == 8 + 40
    assert_prediction_log_asset_keeps_every_prediction_once(spec, log_dir, expected=8 + 40)


def assert_prediction_log_asset_keeps_every_prediction_once(
    spec: ModelSpec, log_dir: Path, expected: int
) -> None:
    """The daily prediction_log asset finds every logged prediction, and none twice."""
    import dagster as dg

    from lifecycle_assets.data.lake import PREDICTION_LOGS, Lake
    from lifecycle_assets.defs.assets.monitoring import build_monitoring_assets
    from lifecycle_assets.defs.resources import LifecycleResource

    # A copy of a segment (a backup, a file restored twice) must not count twice.
    segment = segment_files(log_dir, spec.name)[0]
    segment.with_name(f"copy-{segment.name}").write_bytes(segment.read_bytes())
    today = dt.datetime.now(dt.UTC).date().isoformat()
    result = dg.materialize(
        build_monitoring_assets(spec),
        partition_key=today,
        resources={"lifecycle": LifecycleResource()},
    )
    assert result.success
    settings = Settings.from_env()
    entry = Lake(settings.lake_dir, settings.quarantine_dir, spec.name).daily_entry(
        PREDICTION_LOGS, today
    )
    table = pl.read_parquet(entry["path"])
    assert table.height == expected
    assert table["prediction_id"].n_unique() == expected
    assert table["age"].dtype == pl.Float64


def test_missing_champion_is_a_clear_startup_error(lifecycle_env: Settings) -> None:
    with pytest.raises(ModelSourceError, match="no 'champion' version"):
        load_served_model({**os.environ, "LIFECYCLE_MODEL_SOURCE": "registry"})


def test_unknown_source_mode_is_rejected(lifecycle_env: Settings) -> None:
    with pytest.raises(ModelSourceError, match="must be 'registry' or 'bento'"):
        load_served_model({**os.environ, "LIFECYCLE_MODEL_SOURCE": "s3"})


def test_exported_bento_model_serves_without_the_registry(
    registered_champion: ModelRef, lifecycle_env: Settings, tmp_path: Path
) -> None:
    import bentoml

    tag = export_version(registered_champion)
    model = bentoml.models.get(tag)
    assert model.info.labels["model_version"] == registered_champion.version
    assert model.info.metadata["artifact_sha256"] == registered_champion.artifact_sha256

    # The registry is gone: the bundled copy and its metadata are all the service needs.
    env = {**os.environ, "LIFECYCLE_MODEL_SOURCE": "bento", "MLFLOW_TRACKING_URI": "sqlite:///x"}
    served = load_served_model(env)
    assert served.source == "bento"
    assert served.bento_model_tag == tag
    assert served.ref.version == registered_champion.version
    assert served.ref.training_digest == "test-digest"

    bento_tag = build_bento(ROOT, [tag])
    bento = bentoml.get(bento_tag)
    assert [str(m.tag) for m in bento.info.all_models] == [tag]
    assert any(env.name == "LIFECYCLE_MODEL_SOURCE" for env in bento.info.envs)
    assert (Path(bento.path) / "src" / "lifecycle_assets" / "serving" / "service.py").exists()


@pytest.mark.e2e
def test_built_bento_serves_its_own_model_without_the_registry(
    registered_champion: ModelRef, lifecycle_env: Settings, tmp_path: Path
) -> None:
    bento_tag = build_bento(ROOT, [export_version(registered_champion)])
    env = {k: v for k, v in os.environ.items() if k != "LIFECYCLE_MODEL_SOURCE"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'nowhere' / 'gone.db'}"
    with (
        mock_environ(env),
        serving(bento_tag, tmp_path) as url,
    ):
        metadata = httpx.get(f"{url}/metadata", timeout=5).json()
    assert metadata["source"] == "bento", "a Bento is recognised without LIFECYCLE_MODEL_SOURCE"
    assert metadata["bento_tag"] == bento_tag
    assert metadata["model_version"] == registered_champion.version


def test_tampered_registry_artifact_is_refused(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    stored = next(Path(lifecycle_env.mlflow_artifact_root.removeprefix("file://")).rglob("*.skops"))
    stored.write_bytes(stored.read_bytes() + b"\0")
    # No earlier good version in the ledger to fall back to: nothing serves.
    with pytest.raises(ModelSourceError, match="does not match its registered SHA-256"):
        load_served_model({**os.environ, "LIFECYCLE_MODEL_SOURCE": "registry"})


@contextlib.contextmanager
def mock_environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.e2e
def test_every_prediction_from_several_workers_is_logged_once(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    records = sample_records(spec, 60, day=3)
    with serving(
        SERVICE,
        tmp_path,
        LIFECYCLE_MODEL_SOURCE="registry",
        BENTOML_CONFIG_OPTIONS="services.lifecycle_model.workers=2",
    ) as url:

        async def send_all() -> list[httpx.Response]:
            # One connection per request spreads them over both workers.
            async def one(record: dict[str, Any]) -> httpx.Response:
                async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                    return await client.post("/predict", json={"records": [record]})

            return await asyncio.gather(*(one(record) for record in records))

        responses = asyncio.run(send_all())
        assert all(r.status_code == 200 for r in responses)
        log_dir = lifecycle_env.prediction_log_dir
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if len(logged_lines(log_dir, spec.name)) >= len(records):
                break
            time.sleep(0.1)
    segments = segment_files(log_dir, spec.name)
    assert len({p.name for p in segments}) == 2, "both workers answered, each in its segment"
    assert_prediction_log_asset_keeps_every_prediction_once(spec, log_dir, len(records))


@pytest.mark.e2e
def test_simulated_traffic_lands_delayed_labels(
    server: str, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    from lifecycle_assets.data.ground_truth import read_labels
    from lifecycle_assets.data.traffic import simulate_traffic

    batches = [(dt.date(2026, 3, 9), simulate_day(dt.date(2026, 3, 9), rows_per_day=120))]
    answers, files = simulate_traffic(
        server,
        batches,
        spec,
        labels_dir=tmp_path / "labels",
        log_dirs=[lifecycle_env.prediction_log_spool_dir],
        label_delay=dt.timedelta(days=2),
    )
    assert answers.height == 120 and answers["prediction_id"].n_unique() == 120
    arrival = (answers["predicted_at"][0] + dt.timedelta(days=2)).date()
    assert read_labels(tmp_path / "labels", arrival - dt.timedelta(days=2)).is_empty()
    labels = read_labels(tmp_path / "labels", arrival)
    assert set(labels["prediction_id"]) == set(answers["prediction_id"])
    truth = dict(zip(batches[0][1]["application_id"], batches[0][1]["default"], strict=True))
    by_record = dict(zip(answers["prediction_id"], answers["record_id"], strict=True))
    assert all(truth[by_record[p]] == y for p, y in labels.select("prediction_id", "label").rows())
    assert files


@pytest.mark.e2e
def test_drift_gauges_follow_a_new_report_without_any_request(
    server: str, lifecycle_env: Settings, spec: ModelSpec
) -> None:
    """A report written while no prediction arrives (a model without traffic is exactly the one
    to watch) reaches `/metrics` by itself: only scrapes, no `/predict`, no `/metadata`."""
    latest = lifecycle_env.reports_dir / spec.name / "drift" / "latest.json"
    latest.parent.mkdir(parents=True, exist_ok=True)
    latest.write_text(json.dumps({"day": "2026-11-02", "drifted": True, "psi": {"age": 0.42}}))
    expected = 'lifecycle_feature_drift_psi{feature="age",model_name="credit_default"} 0.42'
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=server, timeout=10) as client:
        while True:
            text = client.get("/metrics").text
            if expected in text or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert expected in text, "the gauges must follow the report with no request to serve"
    assert 'lifecycle_drift_detected{model_name="credit_default"} 1.0' in text
