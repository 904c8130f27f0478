"""Where `lifecycle run` executes its Dagster runs: submitted to a real `dagster-webserver` and
`dagster-daemon` on the PostgreSQL instance (LIFECYCLE_DAGSTER_URL), or in its own process,
where a killed one is still found and ended on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
from click.testing import CliRunner
from dagster._core.storage.tags import GRPC_INFO_TAG
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.defs.jobs import (
    ingest_job_name,
    model_card_job_name,
    monitoring_job_name,
    training_job_name,
)
from lifecycle_assets.defs.partition_ranges import RANGE_END_TAG, RANGE_START_TAG
from lifecycle_assets.recovery import fail_orphaned_dagster_runs
from lifecycle_assets.run_submission import PARTITION_TAG, TAG_SUBMITTED_BY
from lifecycle_assets.spec import load_spec
from lifecycle_assets_tests.small_project import project_env, write_spec
from lifecycle_assets_tests.team_servers import (  # noqa: F401  (fixtures)
    free_port,
    postgres_url,
    stop_group,
    team_dagster_home,
    wait_for_port,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "lifecycle_assets"  # workspace.yaml's location_name
MONITORED_DAY = dt.datetime.now(dt.UTC).date().isoformat()  # today is a serving partition


def test_an_unreachable_webserver_ends_run_in_one_line(tmp_path: Path) -> None:
    env = {**project_env(tmp_path), "LIFECYCLE_DAGSTER_URL": f"http://127.0.0.1:{free_port()}"}
    spec = write_spec(tmp_path)
    result = CliRunner().invoke(main, ["run", "--spec", str(spec)], env=env)
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert "Dagster webserver" in line and "unreachable" in line, line
    assert not (tmp_path / "home" / "lake").exists(), "nothing was ingested"


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=log.parent, env=env, stdout=out, stderr=out, start_new_session=True
        )


def _lifecycle(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[subprocess.Popen, str]:
    """Run the CLI as a user does, to its end; the finished process (its pid names the runs it
    submitted) and its output."""
    process = subprocess.Popen(
        [str(BIN / "lifecycle"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate(timeout=timeout)
    return process, output


def _wait_for_location(url: str, server: subprocess.Popen, timeout: float = 300.0) -> None:
    """Until the webserver has loaded the code location (it answers before it has)."""
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "dagster-webserver exited"
        answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=30).json()
        if (answer["data"]["repositoriesOrError"] or {}).get("nodes"):
            return
        time.sleep(1)
    raise RuntimeError(f"the webserver did not load {LOCATION} within {timeout:.0f} s")


@pytest.mark.e2e
@pytest.mark.team
def test_lifecycle_run_submits_every_run_through_the_webserver_and_the_queue(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec_path = write_spec(tmp_path)
    spec = load_spec(spec_path)
    env = {
        **os.environ,
        **project_env(tmp_path / "state"),
        **team_dagster_home(tmp_path / "dagster_home", postgres_url),
        "LIFECYCLE_SPECS": str(spec_path),  # the webserver's code location loads this spec
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("LIFECYCLE_DAGSTER_URL", None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workspace = str(REPO / "workspace.yaml")
    (tmp_path / "webserver").mkdir()
    (tmp_path / "daemon").mkdir()
    webserver = _start(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace],
        env,
        tmp_path / "webserver" / "webserver.log",
    )
    daemon = _start(
        [str(BIN / "dagster-daemon"), "run", "-w", workspace],
        env,
        tmp_path / "daemon" / "daemon.log",
    )
    try:
        wait_for_port(port, webserver, "dagster-webserver", timeout=300)
        _wait_for_location(url, webserver)
        submitting = {**env, "LIFECYCLE_DAGSTER_URL": url}
        cli, output = _lifecycle(["run"], tmp_path, submitting, timeout=900)
        # `lifecycle monitor` goes the same way: one partition of the monitoring job, launched
        # by the daemon and read back from the instance (no prediction was served that day).
        monitor, monitor_output = _lifecycle(
            ["monitor", "--day", MONITORED_DAY], tmp_path, submitting, timeout=600
        )
    finally:
        stop_group(daemon)
        stop_group(webserver)
    logs = "".join(p.read_text()[-2000:] for p in tmp_path.glob("*/*.log"))
    assert cli.returncode == 0, output[-4000:] + logs
    # Each run's status was shown while the command waited for it.
    assert "is now `champion`" in output and f"{training_job_name(spec)} run" in output
    assert monitor.returncode == 0, monitor_output[-4000:] + logs
    assert f"{spec.name} {MONITORED_DAY}: 0 predictions" in monitor_output, monitor_output
    for key in ("DAGSTER_HOME", "DAGSTER_PG_URL"):
        monkeypatch.setenv(key, env[key])
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs(
            dg.RunsFilter(tags={TAG_SUBMITTED_BY: f"{socket.gethostname()}:{cli.pid}"})
        )
        (monitoring,) = instance.get_runs(
            dg.RunsFilter(tags={TAG_SUBMITTED_BY: f"{socket.gethostname()}:{monitor.pid}"})
        )
        assert monitoring.job_name == monitoring_job_name(spec)
        assert monitoring.tags[PARTITION_TAG] == MONITORED_DAY
        assert monitoring.status == dg.DagsterRunStatus.SUCCESS
        assert monitoring.remote_job_origin is not None
        jobs = sorted(run.job_name for run in runs)
        assert jobs == sorted(
            [ingest_job_name(spec), training_job_name(spec), model_card_job_name(spec)]
        )
        for run in runs:
            assert run.status == dg.DagsterRunStatus.SUCCESS, run.job_name
            # Created by the webserver from its code location, not by the CLI's definitions.
            assert run.remote_job_origin is not None
            assert run.remote_job_origin.location_name == LOCATION
            events = {
                entry.dagster_event_type: entry.dagster_event
                for entry in instance.all_logs(run.run_id)
                if entry.dagster_event is not None
            }
            # Queued (only the daemon dequeues), then launched through a code server's gRPC
            # (the run launcher's tag), and executed by a process of its own.
            assert {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING} <= set(
                events
            )
            assert GRPC_INFO_TAG in run.tags
            executed = events[dg.DagsterEventType.RUN_START].pid
            assert executed not in (None, cli.pid, os.getpid(), webserver.pid, daemon.pid)
        (ingest,) = [run for run in runs if run.job_name == ingest_job_name(spec)]
        assert {RANGE_START_TAG, RANGE_END_TAG} <= set(ingest.tags), "one run for the days"
    tracking = project_env(tmp_path / "state")["MLFLOW_TRACKING_URI"]
    champion = MlflowClient(tracking, registry_uri=tracking).get_model_version_by_alias(
        spec.name, config.CHAMPION_ALIAS
    )
    assert str(champion.version) == "1"
    (training,) = [run for run in runs if run.job_name == training_job_name(spec)]
    assert champion.tags[config.TAG_DAGSTER_RUN_ID] == training.run_id


KILLED_RUN = """
import os, signal
import dagster as dg
from lifecycle_assets.run_submission import execute

@dg.op
def killed():
    os.kill(os.getpid(), signal.SIGKILL)

@dg.job
def killed_job():
    killed()

execute(killed_job, dg.DagsterInstance.get())
"""


@pytest.mark.team
def test_a_killed_in_process_run_on_postgres_is_ended_by_the_next_recovery(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**os.environ, **team_dagster_home(tmp_path / "dagster_home", postgres_url)}
    env.pop("LIFECYCLE_DAGSTER_URL", None)
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", KILLED_RUN], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    for key in ("DAGSTER_HOME", "DAGSTER_PG_URL"):
        monkeypatch.setenv(key, env[key])
    with dg.DagsterInstance.get() as instance:
        started = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert [run.job_name for run in started] == ["killed_job"], "the kill left it STARTED"
        assert fail_orphaned_dagster_runs(instance) == [started[0].run_id]
        assert instance.get_run_by_id(started[0].run_id).status == dg.DagsterRunStatus.FAILURE
