"""`lifecycle run`'s first ingest in a forked child (`lifecycle_assets.forked_ingest`).

Real `lifecycle run` processes on a real Dagster instance and MLflow registry, two models: the
first model's window is ingested by a child while the command loads training; Ctrl-C and
SIGTERM during that ingest end the command as in one process (one line, exit 130); a child
killed at a crash point kills the command alike and leaves no process behind.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from lifecycle_assets.crash import CRASH_AT_ENV, PAUSE_AT_ENV
from lifecycle_assets.recovery import _owner
from lifecycle_assets_tests.small_project import two_models
from lifecycle_assets_tests.test_run_submission import BIN, WITH_CTRL_C, Lines

MODELS = ("first", "second")  # `two_models`


def runs_by_job(state: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple]]:
    """job name -> [(status, pid of the process that executed the run)] of the instance."""
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    found: dict[str, list[tuple]] = {}
    with dg.DagsterInstance.get() as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            found.setdefault(run.job_name, []).append((run.status, _owner(instance, run)[1]))
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie awaiting its reaper is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def lifecycle_run(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "lifecycle"), "run"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_first_ingest_runs_in_a_child_and_everything_else_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, env = two_models(tmp_path)
    done = lifecycle_run(tmp_path, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in MODELS:
        assert f"{name}: ingested 6 day(s)" in done.stdout, done.stdout[-3000:]
    assert done.stdout.count("v1 is now `champion`") == 2, done.stdout[-3000:]
    runs = runs_by_job(state, monkeypatch)
    (first_ingest,) = runs["first_ingest_job"]
    (first_training,) = runs["first_training_job"]
    (second_ingest,) = runs["second_ingest_job"]
    (second_training,) = runs["second_training_job"]
    assert {status for status, _ in runs["first_ingest_job"] + runs["second_training_job"]} == {
        dg.DagsterRunStatus.SUCCESS
    }
    # The child executed the first ingest; the command itself everything after it.
    assert first_ingest[1] != first_training[1]
    assert first_training[1] == second_ingest[1] == second_training[1]
    assert not running(first_ingest[1]), "the child is gone"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_command_during_the_forked_ingest_stops_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: signal.Signals
) -> None:
    """The signal reaches the command, which passes it to the child: the child stops between
    its runs as the one process would, the command says so in one line and exits 130, nothing
    is trained, no process is left, and the next `lifecycle run` completes."""
    state, env = two_models(tmp_path)
    # Held between runs, where the one process would stop at once: in a step with a retry
    # policy (the ingest's), Dagster restarts a step that Ctrl-C interrupted.
    held = {**env, PAUSE_AT_ENV: "before-ingest-run"}
    process = subprocess.Popen(
        [sys.executable, "-c", WITH_CTRL_C, str(BIN / "lifecycle"), "run"],
        cwd=tmp_path,
        env={**held, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(process)
    try:
        # The child creates the instance once released (the checks passed): from then on the
        # command passes signals on. Before, a signal stops it as it would one process.
        runs_db = state / "dagster_home" / "history" / "runs.db"
        deadline = time.monotonic() + 300
        while not runs_db.exists():
            assert time.monotonic() < deadline, "the child never started its ingest"
            assert process.poll() is None, "".join(lines.read)
            time.sleep(0.2)
        children = [child.pid for child in psutil.Process(process.pid).children()]
        time.sleep(2)  # at its pause by now; earlier, it would stop there all the same
        process.send_signal(stop)
        after = lines.rest(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines.read)
    assert process.returncode == 130, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert after.strip().splitlines()[-1] == (
        "interrupted `lifecycle run` outside a run's steps: nothing after it ran, and the next "
        "`lifecycle run` takes up what is left"
    ), after
    assert not any(running(pid) for pid in children), "a child is left"
    runs = runs_by_job(state, monkeypatch)
    assert "first_ingest_job" not in runs and "first_training_job" not in runs, runs
    again = lifecycle_run(tmp_path, env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "first: ingested 6 day(s)" in again.stdout, again.stdout[-3000:]


def test_a_child_killed_in_its_ingest_kills_the_command_and_the_next_run_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash point in the child (SIGKILL, as a power cut): the command dies of the same
    signal, as the one process killed there would, and leaves no process behind."""
    state, env = two_models(tmp_path)
    process = subprocess.Popen(
        [str(BIN / "lifecycle"), "run"],
        cwd=tmp_path,
        env={**env, CRASH_AT_ENV: "before-ingest-run"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    children: set[int] = set()
    while process.poll() is None:  # the child lives for seconds (imports, checks) before
        with contextlib.suppress(psutil.NoSuchProcess):
            children |= {child.pid for child in psutil.Process(process.pid).children()}
        time.sleep(0.05)
    output = process.stdout.read() if process.stdout else ""
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    assert children, "no child was seen"
    assert not any(running(pid) for pid in children), "a child is left"
    again = lifecycle_run(tmp_path, env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    runs = runs_by_job(state, monkeypatch)
    assert [status for status, _ in runs["first_ingest_job"]] == [dg.DagsterRunStatus.SUCCESS]
    assert "first_training_job" in runs and "second_training_job" in runs
