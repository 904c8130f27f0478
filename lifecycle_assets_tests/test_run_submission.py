"""Where `lifecycle run` executes its Dagster runs: submitted to a real `dagster-webserver` and
`dagster-daemon` on the PostgreSQL instance (LIFECYCLE_DAGSTER_URL), or in its own process,
where a killed one is still found and ended on PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest
from click.testing import CliRunner
from dagster._core.storage.tags import GRPC_INFO_TAG
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.crash import IO_ERROR_AT_ENV, PAUSE_AT_ENV
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.jobs import (
    ingest_job_name,
    model_card_job_name,
    monitoring_job_name,
    training_job_name,
)
from lifecycle_assets.defs.partition_ranges import RANGE_END_TAG, RANGE_START_TAG
from lifecycle_assets.recovery import fail_orphaned_dagster_runs
from lifecycle_assets.run_submission import (
    PARTITION_TAG,
    TAG_SUBMITTED_BY,
    cancel,
    cancel_unanswered,
)
from lifecycle_assets.spec import ModelSpec, load_spec
from lifecycle_assets_tests.small_project import project_env, two_models, write_spec
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


def test_a_cancel_the_webserver_cannot_take_names_the_run_to_check() -> None:
    """Ctrl-C after the webserver went away: one line with the run id to check, still 130."""
    url = f"http://127.0.0.1:{free_port()}"
    cancelled = cancel(url, "0b5e3c1e-run", "small_training_job")
    assert cancelled.exit_code == 130
    (line,) = cancelled.format_message().splitlines()
    assert line.startswith("could not cancel run 0b5e3c1e-run of small_training_job (")
    assert line.endswith(f"check it at {url}/runs/0b5e3c1e-run"), line


@dg.op
def _noop() -> None:
    pass


@dg.job
def submitted_job() -> None:
    _noop()


def test_ctrl_c_before_the_webserver_answered_finds_the_run_by_its_tag() -> None:
    """Ctrl-C during the submission call: a run this command submitted is found by its
    `submitted_by` tag and cancelled (here the webserver is gone, so the line names it to
    check); another process's run is left alone; with none, one line says nothing started."""
    url = f"http://127.0.0.1:{free_port()}"
    with dg.instance_for_test() as instance:
        (line,) = cancel_unanswered(url, submitted_job.name, instance).message.splitlines()
        assert line == (
            f"interrupted while submitting {submitted_job.name} to {url}: no run of it from "
            f"this command is in the instance (see {url}/runs)"
        )
        here = socket.gethostname()
        for pid in (os.getpid() + 1, os.getpid()):
            run = instance.create_run_for_job(
                submitted_job,
                tags={TAG_SUBMITTED_BY: f"{here}:{pid}"},
                status=dg.DagsterRunStatus.STARTED,
            )
        cancelled = cancel_unanswered(url, submitted_job.name, instance)
        assert cancelled.exit_code == 130
        assert cancelled.message.startswith(
            f"could not cancel run {run.run_id} of {submitted_job.name} ("
        ), cancelled.message


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


@dataclass
class Deployment:
    """A team deployment: `dagster-webserver` and `dagster-daemon` on one PostgreSQL instance,
    loading the code location of one small spec; what a `lifecycle` command needs to submit."""

    url: str
    env: dict[str, str]  # the submitting CLI's environment (LIFECYCLE_DAGSTER_URL set)
    spec: ModelSpec
    webserver: subprocess.Popen
    daemon: subprocess.Popen
    folder: Path

    def logs(self) -> str:
        return "".join(p.read_text()[-2000:] for p in self.folder.glob("*/*.log"))

    @contextlib.contextmanager
    def instance(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
        """The deployment's instance, in the test's process (its dagster.yaml on PostgreSQL)."""
        for key in ("DAGSTER_HOME", "DAGSTER_PG_URL"):
            monkeypatch.setenv(key, self.env[key])
        with dg.DagsterInstance.get() as instance:
            yield instance


@pytest.fixture
def deployment_env() -> dict[str, str]:
    """Variables the deployment's processes (and so its runs) get on top of the project's; a
    test parametrizes it to hold its runs at a crash point."""
    return {}


@pytest.fixture
def deployment(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
    deployment_env: dict[str, str],
) -> Iterator[Deployment]:
    spec_path = write_spec(tmp_path)
    env = {
        **os.environ,
        **project_env(tmp_path / "state"),
        **team_dagster_home(tmp_path / "dagster_home", postgres_url),
        "LIFECYCLE_SPECS": str(spec_path),  # the webserver's code location loads this spec
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **deployment_env,
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
        yield Deployment(url, submitting, load_spec(spec_path), webserver, daemon, tmp_path)
    finally:
        stop_group(daemon)
        stop_group(webserver)


@pytest.mark.e2e
@pytest.mark.team
def test_lifecycle_run_submits_every_run_through_the_webserver_and_the_queue(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, env, webserver, daemon = (
        deployment.spec,
        deployment.env,
        deployment.webserver,
        deployment.daemon,
    )
    cli, output = _lifecycle(["run"], tmp_path, env, timeout=900)
    # `lifecycle monitor` goes the same way: one partition of the monitoring job, launched
    # by the daemon and read back from the instance (no prediction was served that day).
    monitor, monitor_output = _lifecycle(
        ["monitor", "--day", MONITORED_DAY], tmp_path, env, timeout=600
    )
    logs = deployment.logs()
    assert cli.returncode == 0, output[-4000:] + logs
    # Each run's status was shown while the command waited for it.
    assert "is now `champion`" in output and f"{training_job_name(spec)} run" in output
    assert monitor.returncode == 0, monitor_output[-4000:] + logs
    assert f"{spec.name} {MONITORED_DAY}: 0 predictions" in monitor_output, monitor_output
    with deployment.instance(monkeypatch) as instance:
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
        # The daemon ticked the model card sensor while the command worked and added no card
        # run of its own: the command's card run is the version's only one.
        (card,) = [run for run in runs if run.job_name == model_card_job_name(spec)]
        everyone = instance.get_runs(dg.RunsFilter(job_name=model_card_job_name(spec)))
        assert [run.run_id for run in everyone] == [card.run_id], "one card for v1"
        sensor_name = f"{spec.name}_model_card_sensor"
        (state,) = [s for s in instance.all_instigator_state() if s.name == sensor_name]
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
        assert ticks, "the daemon evaluated the sensor"
        # A tick now, against the same instance and with no cursor, requests nothing either.
        defs = build_definitions([spec])
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        tick = defs.get_sensor_def(sensor_name).evaluate_tick(context)
        assert not tick.run_requests and "v1 already has its card" in tick.skip_message
    tracking = env["MLFLOW_TRACKING_URI"]
    champion = MlflowClient(tracking, registry_uri=tracking).get_model_version_by_alias(
        spec.name, config.CHAMPION_ALIAS
    )
    assert str(champion.version) == "1"
    (training,) = [run for run in runs if run.job_name == training_job_name(spec)]
    assert champion.tags[config.TAG_DAGSTER_RUN_ID] == training.run_id


class Lines:
    """A process's output lines as they come, read by a thread: a pipe's read has no timeout."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.read: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def until(self, seen: Callable[[str], bool], timeout: float) -> None:
        """Read up to the first line `seen` accepts (the process keeps running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = self._queue.get(timeout=1)
                if line is None:
                    raise AssertionError(f"the CLI ended first:\n{''.join(self.read)}")
                self.read.append(line)
                if seen(line):
                    return
        raise AssertionError(f"no such line within {timeout:.0f} s:\n{''.join(self.read)}")

    def rest(self, timeout: float) -> str:
        """The lines after those read so far, to the process's end. A process still running
        after `timeout` is aborted (its threads' stacks printed by faulthandler, which
        `interrupted_lifecycle_run` turns on) and the test fails with what it printed."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            with contextlib.suppress(queue.Empty):
                while (line := self._queue.get(timeout=5)) is not None:
                    self.read.append(line)
            raise AssertionError(
                f"still running {timeout:.0f} s later; its output and stacks:\n"
                + "".join(self.read)[-12000:]
            ) from None
        rest = []
        while (line := self._queue.get(timeout=10)) is not None:
            rest.append(line)
        self.read += rest
        return "".join(rest)


# Exec the command with SIGINT at its default and unblocked, as a shell starts it. Ignoring or
# blocking a signal is inherited across exec: a full suite run's pytest process ignored SIGINT
# (faulthandler showed `lifecycle run` still asleep at its pause 120 s after the signal), and the
# command then never saw Ctrl-C. A pytest started as a background job of a shell without job
# control starts so; `signal_guard` now resets that at start and fails a test that leaves it
# changed, and this keeps the command's start right whatever runs it. `exec` keeps the pid.
WITH_CTRL_C = (
    "import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def interrupted_lifecycle_run(
    cwd: Path, env: dict[str, str], ready: Callable[[Lines, subprocess.Popen], None]
) -> tuple[subprocess.Popen, str, str]:
    """`lifecycle run` as a user starts it, sent SIGINT (Ctrl-C) once `ready` returns: the
    ended process (its pid names the runs it submitted), its whole output and the output after
    the signal."""
    process = subprocess.Popen(
        [sys.executable, "-c", WITH_CTRL_C, str(BIN / "lifecycle"), "run"],
        cwd=cwd,
        env={**env, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(process)
    try:
        ready(lines, process)
        process.send_signal(signal.SIGINT)
        after = lines.rest(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process, "".join(lines.read), after


@pytest.mark.team
# The training run holds after logging its model, so Ctrl-C always finds it running (a fast
# training could otherwise end before the signal, and there would be nothing to cancel).
@pytest.mark.parametrize("deployment_env", [{PAUSE_AT_ENV: "after-log-model"}])
def test_ctrl_c_cancels_the_submitted_run_and_ends_in_one_line(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while `lifecycle run` waits for its training run: the webserver terminates the run,
    the command names it in one line and exits 130, as a shell reports SIGINT. Interrupted
    again once the run has ended, it says there was nothing to cancel."""
    training = training_job_name(deployment.spec)
    process, output, after = interrupted_lifecycle_run(
        tmp_path,
        deployment.env,
        lambda lines, _: lines.until(
            lambda line: f"{training} run" in line and ": STARTED" in line, 600
        ),
    )
    assert process.returncode == 130, output[-4000:] + deployment.logs()
    assert "Traceback" not in output, output[-4000:]
    (line,) = after.strip().splitlines()
    with deployment.instance(monkeypatch) as instance:
        (run,) = instance.get_runs(
            dg.RunsFilter(
                job_name=training,
                tags={TAG_SUBMITTED_BY: f"{socket.gethostname()}:{process.pid}"},
            )
        )
        cancelled = f"cancelled run {run.run_id} of {training} on {deployment.url}"
        assert re.fullmatch(rf"{re.escape(cancelled)} \((CANCELING|CANCELED)\)", line), line
        deadline = time.monotonic() + 120
        while instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELING:
            assert time.monotonic() < deadline, "the launcher never ended the run"
            time.sleep(1)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
    late = cancel(deployment.url, run.run_id, training)
    assert late.exit_code == 130
    assert late.format_message() == (
        f"run {run.run_id} of {training} had already finished (CANCELED) when interrupted: "
        f"nothing to cancel, see {deployment.url}/runs/{run.run_id}"
    )


def test_ctrl_c_stops_an_embedded_lifecycle_run_before_the_next_model(tmp_path: Path) -> None:
    """Ctrl-C during `lifecycle run`'s in-process training run of the first of two models:
    Dagster fails that run and returns, and the command stops there (exit 130, one line naming
    the run) instead of going on to ingest, train and promote the second model."""
    state, env = two_models(tmp_path)
    env[PAUSE_AT_ENV] = "after-log-model"  # the training step holds once its model is logged

    def held_in_training(lines: Lines, process: subprocess.Popen) -> None:
        lines.until(lambda line: line.startswith("first: training"), 600)
        deadline = time.monotonic() + 300
        while not list((state / "mlartifacts").rglob("*.skops")):  # held inside the step now
            assert time.monotonic() < deadline, "the training step never logged its model"
            assert process.poll() is None, "".join(lines.read)
            time.sleep(0.2)

    process, output, after = interrupted_lifecycle_run(tmp_path, env, held_in_training)
    assert process.returncode == 130, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert "second:" not in output, output[-4000:]
    last = after.strip().splitlines()[-1]
    assert re.fullmatch(
        r"interrupted run \S+ of \S+: it ended FAILURE, and nothing after it ran", last
    ), after


def test_ctrl_c_between_two_runs_of_an_embedded_lifecycle_run_ends_in_one_line(
    tmp_path: Path,
) -> None:
    """Ctrl-C after the window's ingest run ended and before the training run was created:
    no step is running, so it is not Dagster's to report. The command ends in one line, exit
    130 (not click's "Aborted!", exit 1), nothing was trained, and the next `lifecycle run`
    reads no day again and trains."""
    spec = write_spec(tmp_path)
    state = tmp_path / "state"
    env = {**os.environ, **project_env(state), "LIFECYCLE_SPECS": str(spec)}
    env.pop("LIFECYCLE_DAGSTER_URL", None)

    def between_runs(lines: Lines, _: subprocess.Popen) -> None:
        # Printed just before `train_and_deploy`, which holds before creating its run: the
        # signal lands outside any run whether it comes before the hold or during it.
        lines.until(lambda line: line.startswith("credit_default: training"), 600)

    process, output, after = interrupted_lifecycle_run(
        tmp_path, {**env, PAUSE_AT_ENV: "before-training-run"}, between_runs
    )
    assert process.returncode == 130, output[-4000:]
    assert "Traceback" not in output and "Aborted!" not in output, output[-4000:]
    assert after.strip().splitlines() == [
        "interrupted `lifecycle run` outside a run's steps: nothing after it ran, and the next "
        "`lifecycle run` takes up what is left"
    ], after
    assert not list((state / "mlartifacts").rglob("*.skops")), "a model was trained"
    again = subprocess.run(
        [str(BIN / "lifecycle"), "run"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "credit_default: ingested 0 day(s)" in again.stdout, again.stdout[-3000:]
    assert list((state / "mlartifacts").rglob("*.skops")), again.stdout[-3000:]


def _raw_manifests(state: Path) -> list[Path]:
    """The days the lake under `state` holds a raw batch of (`<model>/raw/manifests/<day>.json`)."""
    return [
        path
        for path in state.rglob("*.json")
        if path.parent.name == "manifests" and path.parent.parent.name == "raw"
    ]


def _step_events(run_id: str, step_key: str) -> list[dg.DagsterEventType]:
    """The Dagster event types one step of a run recorded (DAGSTER_HOME set by the caller)."""
    with dg.DagsterInstance.get() as instance:
        return [
            entry.dagster_event.event_type
            for entry in instance.all_logs(run_id)
            if entry.dagster_event is not None and entry.step_key == step_key
        ]


RETRY_EVENTS = {dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED}


def test_one_ctrl_c_stops_an_embedded_ingest_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the ingest step of the first of two models stores its days. That step
    retries transient I/O errors; under a Dagster `RetryPolicy` the interruption was one more
    error to retry: the step restarted, only a third Ctrl-C ended it, with "Exceeded
    max_retries", and the command said the step failed (exit 1). One Ctrl-C now ends the step
    (no restart), the command says it was interrupted (exit 130), and the next `lifecycle run`
    ingests what is left and trains."""
    state, env = two_models(tmp_path)

    def held_in_ingest(lines: Lines, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + 300
        while not _raw_manifests(state):  # a day stored: the step holds before the next one
            assert time.monotonic() < deadline, "the ingest step never stored a day"
            assert process.poll() is None, "".join(lines.read)
            time.sleep(0.2)

    process, output, after = interrupted_lifecycle_run(
        tmp_path, {**env, PAUSE_AT_ENV: "after-store-batch"}, held_in_ingest
    )
    assert process.returncode == 130, output[-4000:]
    assert "Traceback" not in output and "Exceeded max_retries" not in output, output[-4000:]
    assert "second:" not in output, output[-4000:]
    last = after.strip().splitlines()[-1]
    assert re.fullmatch(
        r"interrupted run \S+ of first_ingest_job: it ended FAILURE, and nothing after it ran",
        last,
    ), after
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    run_id = last.split()[2]
    events = _step_events(run_id, "first__raw_batches")
    assert dg.DagsterEventType.STEP_FAILURE in events, events
    assert not RETRY_EVENTS & set(events), f"the interrupted step was retried: {events}"
    assert len(_raw_manifests(state)) == 1, "the step went on after Ctrl-C"
    again = subprocess.run(
        [str(BIN / "lifecycle"), "run"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert list((state / "mlartifacts").rglob("*.skops")), again.stdout[-3000:]


def test_a_transient_io_error_in_the_ingest_step_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError inside the ingest step (as a file or store busy for a moment would raise) is
    retried: the run log shows the retry and its cause, and `lifecycle run` ends as usual."""
    spec_path = write_spec(tmp_path)
    state = tmp_path / "state"
    env = {**os.environ, **project_env(state), "LIFECYCLE_SPECS": str(spec_path)}
    env.pop("LIFECYCLE_DAGSTER_URL", None)
    done = subprocess.run(
        [str(BIN / "lifecycle"), "run"],
        cwd=tmp_path,
        env={**env, IO_ERROR_AT_ENV: "after-store-batch"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    spec = load_spec(spec_path)
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(dg.RunsFilter(job_name=ingest_job_name(spec)))
    events = _step_events(run.run_id, f"{spec.name}__raw_batches")
    assert events.count(dg.DagsterEventType.STEP_UP_FOR_RETRY) == 1, events
    assert events[-1] == dg.DagsterEventType.STEP_SUCCESS, events
    log = (state / "home" / "reports" / spec.name / "runs" / f"{run.run_id}.log").read_text()
    assert "STEP_UP_FOR_RETRY" in log and "injected I/O error at after-store-batch" in log, log


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
