"""The signal guard names the test that leaves SIGINT ignored, and passes the ones that don't.

A separate pytest process runs a small test file with only the guard loaded: the tests there
change this process's signals on purpose, which must not touch the pytest running this file.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

TESTS = """
import signal

import pytest


def test_ignores_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sigint_back_to_default():
    # The guard restored the previous test's change before this one started.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_blocks_sigterm():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def test_cleans_up_after_itself():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def ignoring_fixture():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield


def test_uses_a_session_fixture_that_ignores_sigint(ignoring_fixture):
    pass


def test_dagster_style_sigterm_remap_is_restored_quietly():
    signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))


def test_sigterm_default_again():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
"""


def _pytest_with_guard(
    folder: Path, test_file: str, preexec_fn: Callable[[], object] | None = None
) -> subprocess.CompletedProcess[str]:
    """A pytest process in `folder` with the guard as its only project plugin."""
    command = [sys.executable, "-m", "pytest", "-p", "lifecycle_assets_tests.signal_guard"]
    command += ["-p", "no:cacheprovider", "-rA", test_file]
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        command,
        cwd=folder,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec_fn,
    )


def test_guard_fails_the_test_that_changes_signals_and_restores_them(tmp_path: Path) -> None:
    (tmp_path / "test_signals.py").write_text(TESTS)
    done = _pytest_with_guard(tmp_path, "test_signals.py")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert out.count("ERROR at teardown of") == 3, out
    prefix = "left the process's signal state changed"
    assert f"test_signals.py::test_ignores_sigint {prefix}" in out, out
    assert "SIGINT handler _signal.default_int_handler -> SIG_IGN" in out, out
    assert f"test_signals.py::test_blocks_sigterm {prefix}" in out, out
    assert "newly blocked ['SIGTERM']" in out, out
    # A session fixture's setup counts against the first test that uses it.
    assert f"test_signals.py::test_uses_a_session_fixture_that_ignores_sigint {prefix}" in out
    assert "7 passed, 3 errors" in out, out
    assert "signals at start: SIGINT _signal.default_int_handler, SIGTERM SIG_DFL" in out, out


def test_pytest_started_ignoring_sigint_runs_its_tests_with_sigint_at_default(
    tmp_path: Path,
) -> None:
    """A background job of a shell without job control starts with SIGINT ignored; the guard
    says so in the header and resets it, so the commands tests start get Ctrl-C again."""
    (tmp_path / "test_inherited.py").write_text(
        "import signal\n\n\n"
        "def test_sigint_at_default():\n"
        "    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])\n"
    )
    done = _pytest_with_guard(
        tmp_path,
        "test_inherited.py",
        preexec_fn=lambda: (
            signal.signal(signal.SIGINT, signal.SIG_IGN),
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}),
        ),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "signals at start: SIGINT SIG_IGN, SIGTERM SIG_DFL; blocked: ['SIGINT'] (reset: SIGINT "
        "to Python's default, SIGINT and SIGTERM unblocked)" in done.stdout
    ), done.stdout
