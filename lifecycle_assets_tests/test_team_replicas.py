"""Two service replicas on two ports, behind nothing, sharing only PostgreSQL, S3 and the MLflow
server: promotions reach both through the registry webhook (the poll is set to a minute, so only
the push can be this quick), a rollback under load against both drops no request, the prediction
log collected from S3 holds every answered request exactly once, and both replicas export the
drift gauges of the shared report.

Issue 11, item 7. The 5 s figure is the issue's own bar for the webhook push (p95 over 5 swaps).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config, storage
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.data import prediction_log
from lifecycle_assets.ml.drift import latest_drift_path
from lifecycle_assets.ml.training import fit_pipeline, model_input
from lifecycle_assets.provenance.predictions import find_prediction
from lifecycle_assets.registry.aliases import move_alias
from lifecycle_assets.registry.models import log_and_register
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.team_servers import (  # noqa: F401  (fixtures)
    MlflowServer,
    S3Server,
    free_port,
    mlflow_server,
    moto_s3,
    postgres_url,
    team_environment,
)
from lifecycle_assets_tests.test_http_service import SERVICE, sample_records

pytestmark = [pytest.mark.e2e, pytest.mark.team]

REPO = Path(__file__).resolve().parents[1]
SECRET = "replica-webhook-secret"
SWAP_SLA_SECONDS = 5.0  # issue 11: "a promotion reaches both within 5 s (p95 over 5 swaps)"
READY_SECONDS = 240.0
WAIT_SECONDS = 120.0
ROWS = 1_500  # training rows of each version: small, the test is about serving


@contextlib.contextmanager
def replicas(tmp_path: Path, envs: list[dict[str, str]]) -> Iterator[list[str]]:
    """One `bentoml serve` process per entry of `envs` (its own variables) on a free port, each
    with a home of its own (another "machine": nothing local is shared); yields their base URLs
    once all are ready, and stops them gracefully."""
    processes, urls, logs = [], [], []
    try:
        for index, env in enumerate(envs):
            port = free_port()
            home = tmp_path / f"replica-{index}"
            home.mkdir()
            log = home / "serve.log"
            logs.append(log)
            child = {**os.environ, **env, "LIFECYCLE_HOME": str(home / "home")}
            command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port)]
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(command, cwd=REPO, env=child, stdout=out, stderr=out)
                )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + READY_SECONDS
        for process, url, log in zip(processes, urls, logs, strict=True):
            while not _ready(url):
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"{url} not ready within {READY_SECONDS} s"
                time.sleep(0.3)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _served(url: str) -> str:
    return httpx.get(f"{url}/metadata", timeout=5).json()["serving"]["champion"]["version"]


def _register_two_versions(spec: ModelSpec, table: pl.DataFrame) -> None:
    """Two genuinely different versions (fitted on other rows), v1 `champion`."""
    mlflow.set_experiment(Settings.from_env().mlflow_experiment)
    for part in (table.head(ROWS), table.slice(ROWS, ROWS)):
        with mlflow.start_run():
            log_and_register(
                fit_pipeline(part, spec),
                spec,
                input_example=model_input(part, spec),
                version_tags={config.TAG_TRAINING_DIGEST: f"replicas-{part.height}"},
            )
    move_alias(
        MlflowClient(), spec.name, config.CHAMPION_ALIAS, "1", reason="start",
        actor="pytest",
    )  # fmt: skip


def _swap_seconds(urls: list[str], version: str, started: float) -> float:
    """Seconds from `started` until every replica's /metadata names `version`."""
    waiting = set(urls)
    deadline = started + WAIT_SECONDS
    while waiting:
        waiting = {url for url in waiting if _served(url) != version}
        assert time.monotonic() < deadline, f"{waiting} still not on v{version}"
        if waiting:
            time.sleep(0.02)
    return time.monotonic() - started


class AliasClock(MlflowClient):
    """The real client, noting when each alias write is sent: a swap is timed from there."""

    def __init__(self, *args: str) -> None:
        super().__init__(*args)
        self.sent: list[float] = []

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.sent.append(time.monotonic())
        super().set_registered_model_alias(name, alias, version)


class Sender:
    """Keeps posting one to three records to one replica; records every answer and failure."""

    def __init__(self, url: str, records: list[dict]) -> None:
        self.url, self.records = url, records
        self.answered: list[tuple[str, str]] = []  # (prediction id, version)
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        with httpx.Client(base_url=self.url, timeout=20) as http:
            i = 0
            while not self.stop.is_set() and time.monotonic() < deadline:
                size = 1 + i % 3
                chunk = [self.records[(i + k) % len(self.records)] for k in range(size)]
                i += 1
                try:
                    response = http.post("/predict", json={"records": chunk})
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                rows = response.json()["predictions"]
                self.answered += [(r["prediction_id"], r["model_version"]) for r in rows]

    def last_version(self) -> str | None:
        return self.answered[-1][1] if self.answered else None


def _collected(settings: Settings, model: str) -> list[str]:
    """Every prediction id in the log segments on S3, duplicates kept."""
    segments = prediction_log.segment_files(settings.prediction_log_dir, model)
    assert all(str(path).startswith("s3://") for path in segments)
    return [row["prediction_id"] for _, row in prediction_log.logged_rows(segments)]


def _wait_for(check, what: str, seconds: float = WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what} not within {seconds:.0f} s"
        time.sleep(0.5)
    return value


def test_two_replicas_follow_one_registry_and_log_every_answer_once_to_s3(
    mlflow_server: MlflowServer,  # noqa: F811
    moto_s3: S3Server,  # noqa: F811
    postgres_url: str,  # noqa: F811
    spec: ModelSpec,
    small_feature_table: pl.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"replicas-{uuid.uuid4().hex[:8]}"
    team = team_environment(moto_s3, postgres_url, mlflow_server, prefix)
    env = {
        **team,
        "LIFECYCLE_HOME": str(tmp_path / "operator"),
        "LIFECYCLE_WEBHOOK_SECRET": SECRET,
        "LIFECYCLE_MODEL_SOURCE": "registry",
        "LIFECYCLE_MODEL_NAMES": spec.name,
        # A minute: a swap within seconds can only come from the webhook's push.
        "LIFECYCLE_REGISTRY_POLL_SECONDS": "60",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    assert settings.team and settings.ships_prediction_logs
    client = configure_mlflow(settings)
    _register_two_versions(spec, small_feature_table)
    # The drift_report asset's output, on the shared storage only.
    report = {"day": "2026-11-01", "drifted": True, "psi": {"age": 0.31}}
    storage.write_text(latest_drift_path(settings.reports_dir, spec.name), json.dumps(report))

    cli = CliRunner()
    hooks = []
    # Replica 0 ships every second; replica 1 never while it runs, only when it stops.
    ship_every = [{"LIFECYCLE_LOG_SHIP_SECONDS": "1"}, {"LIFECYCLE_LOG_SHIP_SECONDS": "3600"}]
    with replicas(tmp_path, ship_every) as urls:
        try:
            for url in urls:
                result = cli.invoke(main, ["register-webhook", "--service-url", url])
                assert result.exit_code == 0, result.output
                hooks.append(result.output.split()[1])
            assert [_served(url) for url in urls] == ["1", "1"]

            clock = AliasClock(mlflow_server.url, mlflow_server.url)
            swaps, promotions = [], []
            for version in ("2", "1", "2", "1", "2"):
                started = time.monotonic()
                move_alias(clock, spec.name, config.CHAMPION_ALIAS, version,
                           reason="replicas", actor="pytest")  # fmt: skip
                promotions.append(time.monotonic() - started)
                # From the alias write (the promotion itself; `move_alias` verifies the version
                # before it) until both replicas serve the version.
                swaps.append(_swap_seconds(urls, version, clock.sent[-1]))
            p95 = float(np.percentile(swaps, 95))
            print(f"swap seconds {[round(s, 2) for s in swaps]}, p95 {p95:.2f}; "
                  f"move_alias took {[round(c, 2) for c in promotions]}")  # fmt: skip

            senders = [
                Sender(url, sample_records(spec, 30, day=2 + i)) for i, url in enumerate(urls)
            ]
            for sender in senders:
                sender.thread.start()
            _wait_for(lambda: all(len(s.answered) > 20 for s in senders), "answers from both")
            result = cli.invoke(main, ["rollback", spec.name, "--reason", "replica load test"])
            assert result.exit_code == 0, result.output
            _wait_for(lambda: all(s.last_version() == "1" for s in senders), "rollback to v1")
            settled = [len(s.answered) for s in senders]
            _wait_for(
                lambda: all(
                    len(s.answered) > n + 20 for s, n in zip(senders, settled, strict=True)
                ),
                "answers after the rollback",
            )
            for sender in senders:
                sender.stop.set()
                sender.thread.join(timeout=30)

            answered = [pid for s in senders for pid, _ in s.answered]
            versions = {v for s in senders for _, v in s.answered}
            print(f"answered {[len(s.answered) for s in senders]}, failed "
                  f"{[len(s.failures) for s in senders]}")  # fmt: skip
            first = {pid for pid, _ in senders[0].answered}
            _wait_for(lambda: set(_collected(settings, spec.name)) >= first, "replica 0's rows")
            before_stop = set(_collected(settings, spec.name))
            metrics = [httpx.get(f"{url}/metrics", timeout=10).text for url in urls]
            shipping = [
                httpx.get(f"{url}/metadata", timeout=5).json()["prediction_log"] for url in urls
            ]
        finally:
            for hook in hooks:  # registry-wide: stop calling ports that are about to close
                client.delete_webhook(hook)

    assert not any(s.failures for s in senders), [s.failures[:3] for s in senders]
    assert versions == {"1", "2"}, "the rollback happened under load"
    collected = _collected(settings, spec.name)  # ... and everything when it stops
    print(f"collected {len(collected)} rows from S3")
    assert len(collected) == len(set(collected)), "no prediction collected twice"
    assert set(collected) == set(answered) and len(answered) == len(set(answered))
    for status in shipping:
        assert status["rows_lost"] == 0 and status["shipping"]["failed_uploads"] == 0
    assert shipping[0]["shipping"]["rows_shipped"] == len(senders[0].answered)
    assert shipping[1]["shipping"]["rows_shipped"] == 0
    assert before_stop == first, "replica 1 ships nothing while it runs (hourly here)..."
    for text in metrics:
        assert 'lifecycle_feature_drift_psi{feature="age",model_name="credit_default"} 0.31' in (
            text
        ), "each replica exports the shared drift report"

    # The readers go through the storage door: the monitoring scan and `trace`.
    today = dt.datetime.now(dt.UTC).date()
    scan = prediction_log.scan_days(settings, spec.name, today - dt.timedelta(days=1), today)
    assert scan.rows.height == len(answered) and not scan.bad
    found = find_prediction(settings, answered[len(answered) // 2])
    assert found.row is not None and found.where.startswith(f"s3://{moto_s3.bucket}/{prefix}/")
    for index in range(2):
        spool = tmp_path / f"replica-{index}" / "home" / "prediction_logs"
        assert not [p for p in spool.rglob("*") if p.is_file()], "nothing left unshipped"
    # Last, so that every correctness check above has spoken first on a loaded machine.
    assert p95 <= SWAP_SLA_SECONDS, swaps
