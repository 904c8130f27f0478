"""Shipping a replica's prediction log (team mode) on real files: every row arrives once, a failed
upload is counted and retried, an interrupted one is never written twice, and a replica killed
with -9 leaves a segment the next start ships. On moto's S3: the readers (monitoring, `trace`)
and the drift gauges go through the storage door. Two real replicas: `test_team_replicas.py`."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import prometheus_client
import pytest

from lifecycle_assets import storage
from lifecycle_assets.data import prediction_log
from lifecycle_assets.ml.drift import latest_drift_path
from lifecycle_assets.provenance.predictions import find_prediction
from lifecycle_assets.serving.drift_gauges import DriftGauges
from lifecycle_assets.serving.log_shipping import SegmentShipper, open_prediction_log
from lifecycle_assets.serving.metrics import prediction_metrics
from lifecycle_assets.serving.prediction_log import OPEN_SUFFIX, PredictionLogWriter
from lifecycle_assets.settings import LifecycleSettings
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.team_servers import S3Server, moto_s3  # noqa: F401  (fixture)
from lifecycle_assets_tests.test_prediction_logging import _batch, _models

REPO = Path(__file__).resolve().parents[1]


def _shipped_ids(shared: Path, model: str) -> list[str]:
    segments = prediction_log.segment_files(shared, model)
    return [row["prediction_id"] for _, row in prediction_log.logged_rows(segments)]


def _upload_errors(model: str) -> float:
    prediction_metrics()  # registered once per process
    samples = [
        sample.value
        for metric in prometheus_client.REGISTRY.collect()
        if metric.name == "lifecycle_prediction_log_write_errors"
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels.get("model_name") == model
        and sample.labels.get("error", "").startswith("upload: ")
    ]
    return sum(samples)


def _shipper(spool: Path, shared: Path, model: str) -> SegmentShipper:
    metrics = prediction_metrics()
    writer = PredictionLogWriter(spool, model, metrics, rotating=True)
    writer.shipper = SegmentShipper(writer, shared, metrics, every_seconds=3600)
    return writer.shipper


def test_rotated_segments_ship_once_and_a_failed_upload_is_retried(
    tmp_path: Path, spec: ModelSpec
) -> None:
    spool, shared = tmp_path / "spool", tmp_path / "shared"
    shipper = _shipper(spool, shared, spec.name)
    writer, answered = shipper.writer, []
    # The shared folder cannot be created (a file is in the way): the upload fails for real.
    shared.write_text("in the way")
    before = _upload_errors(spec.name)
    rows, records = _batch(spec, 5)
    writer.log(rows, records, _models(spec))
    answered += [r["prediction_id"] for r in rows]
    assert shipper.ship_once(older_than=0) == 1, "the closed segment waits locally"
    assert _upload_errors(spec.name) == before + 1
    assert writer.status()["shipping"]["last_error"].startswith("upload: ")
    assert writer.health() == "ok" and writer.rows_lost == 0, "waiting rows are not lost"

    shared.unlink()
    for _ in range(3):  # three batches, each in a segment of its own
        rows, records = _batch(spec, 4)
        writer.log(rows, records, _models(spec))
        answered += [r["prediction_id"] for r in rows]
        assert shipper.ship_once(older_than=0) == 0
    assert sorted(_shipped_ids(shared, spec.name)) == sorted(answered)
    assert shipper.status()["segments_shipped"] == 4 and shipper.last_error is None
    assert not list(spool.rglob("*.jsonl")) and not list(spool.rglob(f"*{OPEN_SUFFIX}"))

    # A crash between the upload and the local delete: the segment is found again locally.
    (shipped,) = prediction_log.segment_files(shared, spec.name)[:1]
    again = spool / spec.name / shipped.parent.name / shipped.name
    again.write_bytes(shipped.read_bytes())
    stamp = shipped.stat().st_mtime_ns
    assert shipper.ship_once(older_than=0) == 0 and not again.exists()
    assert shipped.stat().st_mtime_ns == stamp, "the object was not written twice"
    assert sorted(_shipped_ids(shared, spec.name)) == sorted(answered)

    # A segment younger than the period stays open; stopping ships it.
    rows, records = _batch(spec, 2)
    writer.log(rows, records, _models(spec))
    answered += [r["prediction_id"] for r in rows]
    assert shipper.ship_once() == 0 and len(list(spool.rglob(f"*{OPEN_SUFFIX}"))) == 1
    assert shipper.stop() == 0
    assert sorted(_shipped_ids(shared, spec.name)) == sorted(answered)


_KILLED_WRITER = """
import json, sys, time
from lifecycle_assets.serving.metrics import prediction_metrics
from lifecycle_assets.serving.prediction_log import PredictionLogWriter
from lifecycle_assets.spec import default_spec
from lifecycle_assets_tests.team_servers import S3Server, moto_s3  # noqa: F401  (fixture)
from lifecycle_assets_tests.test_prediction_logging import _batch, _models

spec = default_spec()
writer = PredictionLogWriter(sys.argv[1], spec.name, prediction_metrics(), rotating=True)
rows, records = _batch(spec, 7)
writer.log(rows, records, _models(spec))
print(json.dumps([r["prediction_id"] for r in rows]), flush=True)
time.sleep(600)
"""


def test_a_replica_killed_mid_segment_leaves_rows_the_next_start_ships(
    tmp_path: Path, spec: ModelSpec
) -> None:
    spool, shared = tmp_path / "spool", tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), str(spool)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        answered = json.loads(process.stdout.readline())
        # While the writer lives, its open segment is locked: nobody ships it.
        assert _shipper(spool, shared, spec.name).ship_once(older_than=0) == 0
        assert _shipped_ids(shared, spec.name) == []
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    (left,) = spool.rglob(f"*{OPEN_SUFFIX}")
    assert _shipper(spool, shared, spec.name).ship_once() == 0, "the next start reconciles"
    assert sorted(_shipped_ids(shared, spec.name)) == sorted(answered)
    assert not left.exists()


def test_embedded_default_writes_in_place_and_ships_nothing(
    tmp_path: Path, spec: ModelSpec
) -> None:
    settings = LifecycleSettings.from_env({"LIFECYCLE_HOME": str(tmp_path / "home")})
    assert not settings.ships_prediction_logs
    assert settings.prediction_log_dir == settings.prediction_log_spool_dir
    writer = open_prediction_log(settings, spec.name, prediction_metrics())
    assert writer.shipper is None and not writer.rotating
    rows, records = _batch(spec, 2)
    writer.log(rows, records, _models(spec))
    today = dt.datetime.now(dt.UTC).date()
    assert writer.path(today).name == f"{writer.segment}.jsonl"
    assert "shipping" not in writer.status()
    team = settings.replace(storage_url="s3://bucket/prefix")
    assert team.ships_prediction_logs and str(team.prediction_log_dir).startswith("s3://bucket/")


@pytest.mark.team  # moto's S3 server
def test_segments_shipped_to_s3_are_read_by_monitoring_and_trace(
    moto_s3: S3Server,  # noqa: F811
    tmp_path: Path,
    spec: ModelSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIFECYCLE_STORAGE_URL", moto_s3.url(f"ship-{uuid.uuid4().hex[:8]}"))
    settings = LifecycleSettings.from_env()
    writer = open_prediction_log(settings, spec.name, prediction_metrics())
    assert writer.rotating and writer.shipper is not None
    rows, records = _batch(spec, 6)
    writer.log(rows, records, _models(spec))
    answered = [r["prediction_id"] for r in rows]
    assert writer.shipper.stop() == 0
    (segment,) = prediction_log.segment_files(settings.prediction_log_dir, spec.name)
    assert str(segment).startswith(f"s3://{moto_s3.bucket}/")
    assert segment.name == f"{writer.segment}-000001.jsonl"
    today = dt.datetime.now(dt.UTC).date()
    scan = prediction_log.scan_days(settings, spec.name, today, today)
    assert sorted(scan.rows["prediction_id"]) == sorted(answered) and not scan.bad
    found = find_prediction(settings, answered[3])
    assert found.row["prediction_id"] == answered[3] and found.where == str(segment)


@pytest.mark.team  # moto's S3 server
def test_drift_gauges_follow_the_shared_report_even_rewritten_within_a_second(
    moto_s3: S3Server,  # noqa: F811
) -> None:
    reports = moto_s3.url(f"reports-{uuid.uuid4().hex[:8]}")
    model = f"drift-{uuid.uuid4().hex[:6]}"
    gauges = DriftGauges(reports, model, prediction_metrics())
    gauges.check()  # no report yet: nothing exported, nothing raised

    def psi() -> float | None:
        labels = {"model_name": model, "feature": "age"}
        return prometheus_client.REGISTRY.get_sample_value("lifecycle_feature_drift_psi", labels)

    assert psi() is None
    for value in (0.31, 0.07):  # two writes in the same second: the ETag tells them apart
        report = {"day": "2026-11-01", "drifted": value > 0.2, "psi": {"age": value}}
        storage.write_text(latest_drift_path(reports, model), json.dumps(report))
        gauges.check()
        assert psi() == value
