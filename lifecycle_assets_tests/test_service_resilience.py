"""A real `bentoml serve` against a bad registry: it serves the last good version, or it exits
at once with one line saying why; it never restarts for ever, and it dies with its supervisor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.startup import EXIT_CONFIG, PREFIX
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_hot_swap import move, register_copy, wait_for
from lifecycle_assets_tests.test_http_service import (
    ROOT,
    SERVICE,
    free_port,
    post,
    sample_records,
    serving,
)

FAST_POLL = {"LIFECYCLE_MODEL_SOURCE": "registry", "LIFECYCLE_REGISTRY_POLL_SECONDS": "0.5"}
TOKEN = "resilience-admin-token"
GAUGE = 'lifecycle_serving_degraded{model_name="credit_default"}'


def tamper_tag(ref: ModelRef) -> None:
    """Change the recorded SHA-256 after the version was promoted (as an attacker would)."""
    MlflowClient().set_model_version_tag(
        ref.name, ref.version, config.TAG_ARTIFACT_SHA256, "0" * 64
    )


@pytest.mark.e2e
def test_a_champion_that_cannot_serve_falls_back_to_the_last_good_version(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    v2 = register_copy(registered_champion)
    move(v2)
    tamper_tag(v2)
    # A drift report the drift asset is still writing: /metadata must not fail on it.
    drift = lifecycle_env.reports_dir / spec.name / "drift" / "latest.json"
    drift.parent.mkdir(parents=True, exist_ok=True)
    drift.write_text('{"day": "2026-11-01", "psi": {"age": 0.')
    records = sample_records(spec, 3)
    env = {**FAST_POLL, "LIFECYCLE_ADMIN_TOKEN": TOKEN}
    with serving(SERVICE, tmp_path, **env) as url, httpx.Client(base_url=url, timeout=10) as c:
        metadata = c.get("/metadata")
        assert metadata.status_code == 200, metadata.text
        body = metadata.json()
        assert body["serving"]["champion"]["version"] == registered_champion.version
        degraded = body["degraded"]
        assert (degraded["registry_holder"], degraded["serving"]) == (v2.version, "1")
        assert "SHA-256" in degraded["reasons"][0]
        # Public answers name no internal path; the admin status has the detail.
        assert str(tmp_path) not in metadata.text and "/tmp" not in metadata.text
        admin = c.get("/admin/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert "model.skops has SHA-256" in admin["degraded"]["detail"]
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["degraded"] == ["credit_default"]
        assert f"{GAUGE} 1.0" in c.get("/metrics").text
        rows = post(c, records).json()["predictions"]
        assert {r["model_version"] for r in rows} == {"1"}

        # A good version promoted next is swapped in and the degradation ends.
        v3 = register_copy(registered_champion)
        move(v3)
        wait_for(lambda: c.get("/metadata").json()["model_version"] == v3.version)
        assert c.get("/metadata").json()["degraded"] is None
        assert c.get("/readyz").json()["status"] == "ready"
        assert f"{GAUGE} 0.0" in c.get("/metrics").text

        # Promoted while running, then found without its SHA-256 tag (half-registered): the
        # service keeps v3 and says it is degraded.
        v4 = register_copy(registered_champion)
        move(v4)
        wait_for(lambda: c.get("/metadata").json()["model_version"] == v4.version)
        v5 = register_copy(registered_champion)
        client = MlflowClient()
        client.delete_model_version_tag(v5.name, v5.version, config.TAG_ARTIFACT_SHA256)
        # `move_alias` refuses it; an outside writer of the registry could still set it.
        client.set_registered_model_alias(v5.name, config.CHAMPION_ALIAS, v5.version)
        degraded = wait_for(lambda: c.get("/metadata").json()["degraded"])
        assert (degraded["registry_holder"], degraded["serving"]) == (v5.version, v4.version)
        assert "artifact_sha256" in degraded["reasons"][0]
        rows = post(c, records).json()["predictions"]
        assert {r["model_version"] for r in rows} == {v4.version}
        assert f"{GAUGE} 1.0" in c.get("/metrics").text


def run_to_exit(tmp_path: Path, seconds: float = 120, **env: str) -> tuple[int, str, int]:
    """Start `bentoml serve`, wait for it to exit; (exit code, output, port)."""
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port)]
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **env}
    process = subprocess.Popen(
        command, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"still running after {seconds} s: {output.decode()[-2000:]}")
    return process.returncode, output.decode(errors="replace"), port


def assert_port_free(port: int) -> None:
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


def the_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(PREFIX)]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    return lines[0]


def test_fatal_configuration_ends_the_service_with_one_line(
    registered_champion: ModelRef, lifecycle_env: Settings, tmp_path: Path
) -> None:
    missing = f"sqlite:///{tmp_path / 'typo' / 'mlflow.db'}"
    code, output, port = run_to_exit(tmp_path, MLFLOW_TRACKING_URI=missing)
    assert code == EXIT_CONFIG and "no registry at" in the_line(output)
    assert not (tmp_path / "typo").exists(), "a mistyped path must not create a registry"
    assert_port_free(port)

    # A misspelt profile: one line naming the variable, from the supervisor's check (registry
    # source) and from the worker's (a Bento's source, which the supervisor does not check).
    for source in ("registry", "bento"):
        code, output, port = run_to_exit(
            tmp_path, LIFECYCLE_PROFILE="Team", LIFECYCLE_MODEL_SOURCE=source
        )
        assert code == EXIT_CONFIG, output
        line = the_line(output)
        assert "the settings (environment or .env) are refused" in line, line
        assert "LIFECYCLE_PROFILE: Input should be 'embedded' or 'team'" in line, line

    code, output, port = run_to_exit(tmp_path, LIFECYCLE_MODEL_NAMES="credit_defualt")
    assert code == EXIT_CONFIG and "unknown model 'credit_defualt'" in the_line(output)
    assert_port_free(port)

    # The only version in the registry and the ledger fails verification: nothing to serve.
    tamper_tag(registered_champion)
    code, output, port = run_to_exit(tmp_path, LIFECYCLE_MODEL_NAMES="credit_default")
    assert code == EXIT_CONFIG, output
    assert "no earlier `champion` that verifies" in the_line(output)
    assert_port_free(port)


def test_the_worker_dies_with_its_supervisor(
    registered_champion: ModelRef, lifecycle_env: Settings, tmp_path: Path
) -> None:
    with serving(SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry") as url:
        port = int(url.rsplit(":", 1)[1])
        supervisor = next(
            p
            for p in psutil.Process().children()
            if "serve" in p.cmdline() and str(port) in p.cmdline()
        )
        workers = supervisor.children(recursive=True)
        assert workers
        supervisor.send_signal(signal.SIGKILL)
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, f"workers left running: {[p.pid for p in alive]}"
        deadline = time.monotonic() + 5
        while True:
            try:
                assert_port_free(port)
                break
            except AssertionError:
                assert time.monotonic() < deadline
                time.sleep(0.2)


def test_the_fallback_is_the_most_recent_earlier_holder_that_verifies(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    """In-process start-up choice: versions a rollback left, or that fail too, are skipped."""
    from lifecycle_assets.registry.aliases import rollback
    from lifecycle_assets.serving.model_source import load_served_model

    env = {**os.environ, "LIFECYCLE_MODEL_SOURCE": "registry"}
    v2, v3, v4 = (register_copy(registered_champion) for _ in range(3))
    move(v2)
    move(v3)
    rollback(MlflowClient(), v3.name, actor="pytest", reason="bad canary")  # v3 -> v2
    move(v4)
    tamper_tag(v4)
    served = load_served_model(env)
    assert served.ref.version == v2.version, "v3 was rolled back from: never a fallback"
    assert served.degradation is not None and served.degradation.holder == v4.version

    tamper_tag(v2)
    served = load_served_model(env)
    assert served.ref.version == registered_champion.version
    assert served.degradation.serving == registered_champion.version


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("sqlite:///{tmp}/empty.db", "not an MLflow registry"),
        ("sqlite:///{tmp}/corrupt.db", "cannot be read"),
        ("sqlite:///{tmp}/missing/mlflow.db", "no registry at"),
        ("http://127.0.0.1:{port}", "did not answer within 1 s"),
    ],
)
def test_preflight_names_each_fatal_registry_problem(
    tmp_path: Path, uri: str, fragment: str
) -> None:
    """The supervisor's checks, in-process: one message per cause, within the bounded wait."""
    from lifecycle_assets.serving.startup import FatalConfigError, preflight

    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "corrupt.db").write_bytes(b"this is not a database" * 100)
    env = {
        "LIFECYCLE_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": uri.format(tmp=tmp_path, port=free_port()),
        "LIFECYCLE_MODEL_SOURCE": "registry",
        "LIFECYCLE_REGISTRY_WAIT_SECONDS": "1",
    }
    with pytest.raises(FatalConfigError, match=fragment):
        preflight(env)
    assert not (tmp_path / "missing").exists()
