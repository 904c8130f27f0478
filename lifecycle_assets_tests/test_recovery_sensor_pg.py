"""On the team's PostgreSQL instance, a run the daemon launched is ended by the recovery sensor
once a `kill -9` of the daemon (its code server and run worker with it) left it STARTED.

Daemon-launched runs carried no host tag, and on a shared PostgreSQL the sensor cannot assume
the run's process is on its own machine, so it left them alone: the killed run held its
`<model>_training` pool slot forever. The project's executors now tag each run with the host and
pid of the process executing it; the sensor ends such a run only once that process is gone, and
names (without ending) the STARTED runs of another host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.executors import OwnedExecutorDefinition
from lifecycle_assets.defs.recovery_sensor import RECOVERY_SENSOR
from lifecycle_assets.registry.owner import TAG_HOST, TAG_RUN_WORKER
from lifecycle_assets.run_submission import submitted_by
from lifecycle_assets_tests.team_servers import (  # noqa: F401  (fixture)
    postgres_url,
    team_dagster_home,
)

pytestmark = pytest.mark.team  # real PostgreSQL, a real daemon
REPO = Path(__file__).resolve().parents[1]

# A job of the project's executor whose step holds a training-pool slot until it is killed.
SLOT_DEFS = """
import time

import dagster as dg

from lifecycle_assets.defs.executors import step_executor


@dg.op(pool="credit_default_training")
def holds_the_slot() -> None:
    time.sleep(900)


@dg.job(executor_def=step_executor())
def slot_job() -> None:
    holds_the_slot()


defs = dg.Definitions(jobs=[slot_job])
"""


def test_every_job_of_the_code_location_tags_its_runs_owner(spec) -> None:
    jobs = build_definitions([spec]).get_repository_def().get_all_jobs()
    plain = [job.name for job in jobs if not isinstance(job.executor_def, OwnedExecutorDefinition)]
    assert not plain, f"runs of these jobs carry no owner for recovery: {plain}"


def _wait_for_slot(instance: dg.DagsterInstance, daemon: subprocess.Popen, log: Path) -> str:
    """The run id once the daemon's run holds its pool slot (its step started)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert daemon.poll() is None, log.read_text()[-3000:]
        holders = instance.event_log_storage.get_concurrency_run_ids()
        if holders:
            (run_id,) = holders
            return run_id
        time.sleep(1)
    raise AssertionError(f"no run took the slot:\n{log.read_text()[-3000:]}")


def _tick(instance: dg.DagsterInstance, defs: dg.Definitions) -> str:
    sensor = defs.get_repository_def().get_sensor_def(RECOVERY_SENSOR)
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert not tick.run_requests
    return tick.skip_message or ""


def test_the_sensor_ends_a_daemon_launched_run_killed_with_its_daemon_on_postgres(
    spec,
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team = team_dagster_home(tmp_path / "dagster_home", postgres_url)
    for key, value in team.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LIFECYCLE_CELERY_BROKER", raising=False)
    (tmp_path / "slot_defs.py").write_text(SLOT_DEFS)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        # Its own process group, so that one SIGKILL takes the daemon, its code server and the
        # run worker at once, as a killed machine or container would.
        daemon = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-f", "slot_defs.py"],
            cwd=tmp_path, env=env, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    defs = build_definitions([spec])
    try:
        launch = [str(Path(sys.executable).with_name("dagster")), "job", "launch"]
        launch += ["-f", "slot_defs.py", "-j", "slot_job"]
        done = subprocess.run(
            launch, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        with dg.DagsterInstance.get() as instance:
            run_id = _wait_for_slot(instance, daemon, log)
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.STARTED
            host, pid = run.tags[TAG_RUN_WORKER].split(":")
            assert host == socket.gethostname(), run.tags
            worker = int(pid)
            # Still not a run `lifecycle run` executed (the card sensor tells them apart).
            assert TAG_HOST not in run.tags and submitted_by(run) is None, run.tags

            # Alive: left alone.
            assert "nothing to settle" in _tick(instance, defs)
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED

            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(worker).wait(timeout=30)

            # A STARTED run of another machine: named, never ended from here.
            elsewhere = instance.create_run_for_job(
                _elsewhere_job(),
                status=dg.DagsterRunStatus.STARTED,
                tags={TAG_RUN_WORKER: f"another-host:{worker}"},
            )

            message = _tick(instance, defs)

            assert run_id in message, message
            assert f"{elsewhere.run_id} (on another-host)" in message, message
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
            assert instance.get_run_by_id(elsewhere.run_id).status == dg.DagsterRunStatus.STARTED
            storage = instance.event_log_storage
            assert not storage.get_concurrency_run_ids(), "the killed run still holds its slot"
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)


def _elsewhere_job() -> dg.JobDefinition:
    @dg.op
    def nothing() -> None: ...

    @dg.job
    def elsewhere_job() -> None:
        nothing()

    return elsewhere_job
