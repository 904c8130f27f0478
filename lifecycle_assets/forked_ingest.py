"""`lifecycle run`'s first ingest in a forked child, while this process loads training.

The first seconds of `lifecycle run` import what training needs (MLflow, scikit-learn, skops,
matplotlib, BentoML) and open and reconcile the registry; the first model's ingest needs none
of it. A thread cannot overlap the two: importing holds the interpreter lock, and each time the
ingest takes the lock back from polars it waits out the switch interval (measured: 2.5 s of
imports in a thread made a 7 s ingest take 15 s). A process can. The child is forked at the
command's start, before numpy, polars or Dagster are imported (their native thread pools would
not survive a fork: a child's first parallel polars operation waited forever) and before any
database connection exists. It loads its own modules, waits until the parent's checks have
passed (`release`; `abort` ends it having written nothing), ingests on the other core while the
parent loads and reconciles (`training_setup.TrainingSetUp.run_here`), sends back the outcome
as JSON through a pipe and leaves with `os._exit` (the parent's exit handlers are the parent's).

What the user sees does not change:
- the child draws the progress bar (the parent's warm-up prints nothing of its own);
- an error of the ingest ends the command as it would in one process: the child sends the
  exception's class and message, and the parent raises the same class (those `lifecycle run`
  handles: a click error such as a failed ingest run, a cancelled run, unusable storage);
  anything else ends the command with the child's traceback in the message;
- Ctrl-C or SIGTERM reaching the parent once the child runs is passed on to it (it has its own
  process group, so a terminal's Ctrl-C reaches it once, through the parent), and the child
  reacts as the one process would: a run's step ends as interrupted, or the ingest stops
  between runs; the parent then raises what the child reports. Before `release`, the parent
  reacts alone, as before, and the child ends with it having written nothing;
- a child killed (a crash point's SIGKILL) kills the parent with the same signal, as if the one
  process had been killed there; a parent killed takes the child with it (PR_SET_PDEATHSIG).

Where fork cannot be used (no `os.fork`, a thread already running, output captured in memory,
runs submitted to a webserver, `LIFECYCLE_FORK_FIRST_INGEST=false`), the command ingests in its
own process as before.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from typing import Any

import click

from lifecycle_assets.data.ingest_outcome import IngestOutcome

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.1
FORWARDED = (signal.SIGINT, signal.SIGTERM)


def can_fork() -> bool:
    """Whether the child can be forked safely: fork exists, no other thread of this process
    exists (Python's or native: polars' thread pool, once started, is not there in a child and
    its first parallel operation would wait for it forever), and the output goes to real files
    the child writes to as well (not, say, a test runner's in-memory capture, which the child's
    copy would swallow)."""
    return hasattr(os, "fork") and _threads() == 1 and _real_output()


def _threads() -> int:
    """Threads of this process, native ones included where /proc tells."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _real_output() -> bool:
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


@dataclass
class ForkedIngest:
    """A child waiting for `release` (or `abort`), the read end of its result pipe and the
    write end of its go-ahead pipe."""

    pid: int
    pipe: int
    go: int

    def release(self) -> None:
        """Let the child start: the checks before anything is written have passed."""
        os.write(self.go, b"1")
        os.close(self.go)

    def abort(self) -> None:
        """End the child before it wrote anything (a check failed, or this process stops)."""
        os.close(self.go)
        os.close(self.pipe)
        with suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def finished(self) -> bool:
        """Whether the child has sent its outcome or ended (its pipe is readable)."""
        ready, _, _ = select.select([self.pipe], [], [], 0)
        return bool(ready)

    def wait(self, *, warm_up: Callable[[Callable[[], bool]], None] | None = None) -> IngestOutcome:
        """Run `warm_up(finished)` here while the child ingests, then the child's outcome (or
        its error, raised). A signal the parent receives meanwhile is passed on to the child,
        and the command ends as the child reports (a cancelled run), or as interrupted."""
        forwarder = _Forwarder(self.pid)
        failed: BaseException | None = None
        with forwarder.installed():
            try:
                if warm_up is not None:
                    warm_up(self.finished)
            except KeyboardInterrupt:
                pass  # the child was told and ends its run; what it reports is raised below
            except BaseException as error:  # raised once the child has ended, not orphaned
                failed = error
            forwarder.warming = False
            payload = self._collect()
        if failed is not None:
            raise failed
        if forwarder.seen and "outcome" in payload:
            raise KeyboardInterrupt  # the child had finished: the command stops here
        return _outcome(payload)

    def _collect(self) -> dict[str, Any]:
        """The child's message and its end; a child killed by a signal kills the parent alike.

        The pipe is polled, not read blocking: a signal delivered to another thread of this
        process would not interrupt a blocking read, and the handler that passes it on to the
        child runs only when the main thread runs Python code."""
        chunks = []
        while True:
            ready, _, _ = select.select([self.pipe], [], [], POLL_SECONDS)
            if not ready:
                continue
            chunk = os.read(self.pipe, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(self.pipe)
        while not (ended := os.waitpid(self.pid, os.WNOHANG))[0]:
            time.sleep(POLL_SECONDS)
        status = ended[1]
        if os.WIFSIGNALED(status):
            sys.stdout.flush()
            os.kill(os.getpid(), os.WTERMSIG(status))
        data = b"".join(chunks)
        return json.loads(data) if data else {}


def start(
    ingest: Callable[[], IngestOutcome], prepare: Callable[[], None] | None = None
) -> ForkedIngest:
    """Fork a child that runs `prepare` (its imports), waits for `release`, then runs `ingest`
    and sends back its outcome or its error. The child writes nothing before `release`."""
    read_end, write_end = os.pipe()
    go_read, go_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(write_end)
        os.close(go_read)
        return ForkedIngest(pid, read_end, go_write)
    os.close(read_end)  # in the child from here on: it never returns
    os.close(go_write)
    _child(ingest, prepare, write_end, go_read)
    raise AssertionError("unreachable")  # pragma: no cover


def _child(
    ingest: Callable[[], IngestOutcome],
    prepare: Callable[[], None] | None,
    pipe: int,
    go: int,
) -> None:
    os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the parent only, which passes it on
    _die_with_parent()
    for signum in FORWARDED:
        signal.signal(signum, signal.default_int_handler)  # as the one process would react
    unprepared: BaseException | None = None
    try:
        if prepare is not None:
            prepare()
    except BaseException as error:  # the ingest's own error, sent once released
        unprepared = error
    try:
        released = os.read(go, 1) == b"1"
    except BaseException:
        released = False
    if not released:  # aborted, or the parent is gone: nothing was written
        os._exit(0)
    try:
        if unprepared is not None:
            raise unprepared
        payload: dict[str, Any] = {"outcome": asdict(ingest())}
    except BaseException as error:  # sent to the parent, which raises it
        payload = {
            "error": type(error).__name__,
            "message": str(error.message if isinstance(error, click.ClickException) else error),
            "click": isinstance(error, click.ClickException),
            "exit_code": getattr(error, "exit_code", 1),
            "traceback": traceback.format_exc(),
        }
    try:
        data = json.dumps(payload, default=str).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(pipe, view) :]
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _die_with_parent() -> None:
    """SIGKILL this child when the parent dies, as one process killed would take its work."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent still waits for the child
        return
    if os.getppid() == 1:  # the parent died before the request was made
        os._exit(1)


class _Forwarder:
    """SIGINT and SIGTERM sent to the parent, passed on to the child, each time (a second
    Ctrl-C means what it means in one process); while the parent warms up, a signal also stops
    the warm-up (KeyboardInterrupt)."""

    def __init__(self, child: int) -> None:
        self.child = child
        self.seen: list[int] = []
        self.warming = True

    def __call__(self, signum: int, frame: Any) -> None:
        self.seen.append(signum)
        with suppress(ProcessLookupError):
            os.kill(self.child, signum)
        if self.warming:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = {signum: signal.signal(signum, self) for signum in FORWARDED}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _outcome(payload: dict[str, Any]) -> IngestOutcome:
    """The child's outcome; its error raised here as the class the one process would raise."""
    if "outcome" in payload:
        return IngestOutcome(**payload["outcome"])
    if not payload:
        raise RuntimeError("the first ingest's process ended without a word (see its output)")
    raise _error(payload)


def _error(payload: dict[str, Any]) -> BaseException:
    from lifecycle_assets.run_submission import RunCancelled
    from lifecycle_assets.storage import CorruptFileError, StorageUnavailableError

    name, message = payload["error"], payload["message"]
    if name == "KeyboardInterrupt":
        return KeyboardInterrupt()
    if name == "RunCancelled":
        return RunCancelled(message)
    if payload.get("click"):
        error = click.ClickException(message)  # one line, the same exit code
        error.exit_code = int(payload["exit_code"])
        return error
    # The errors `lifecycle run` turns into one line itself (a damaged manifest, unreachable
    # shared storage); a failed ingest run arrives as the click error `_ingest` made of it.
    for cls in (CorruptFileError, StorageUnavailableError):
        if name == cls.__name__:
            return cls(message)
    return RuntimeError(f"the first ingest failed: {payload['traceback']}")
