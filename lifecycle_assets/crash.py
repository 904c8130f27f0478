"""Named crash points: where the fault-injection tests kill a process, as a power cut would.

Modelled on Dagster's own crash-injection tests: code calls `crash_point("after-register")`
between two steps whose partial completion must be recoverable; when the environment variable
LIFECYCLE_CRASH_AT names that point, the process sends itself SIGKILL there (no `finally`, no
atexit, no flush). Unset, a crash point costs three dictionary lookups.

The same points can hold a process instead (LIFECYCLE_PAUSE_AT): a test that must interrupt a
run while it is running (Ctrl-C, termination) pauses it there rather than racing a run that
may finish first. The pause is a plain sleep, so a signal or a run's termination ends it.

A point can also fail once (LIFECYCLE_IO_ERROR_AT): the first time the process reaches it, it
raises an OSError, as a file or a store busy for a moment would; reached again (a retried
step), it passes. That is how a test shows a transient error is retried.
"""

from __future__ import annotations

import errno
import os
import signal
import time

CRASH_AT_ENV = "LIFECYCLE_CRASH_AT"
PAUSE_AT_ENV = "LIFECYCLE_PAUSE_AT"
IO_ERROR_AT_ENV = "LIFECYCLE_IO_ERROR_AT"
# Long enough for any test to act on the paused run; short enough not to hang one that forgot it.
PAUSE_SECONDS = 600.0
# The points that already failed in this process: each fails once only.
_failed: set[str] = set()


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if LIFECYCLE_CRASH_AT is `name`; hold it for
    PAUSE_SECONDS if LIFECYCLE_PAUSE_AT is `name`; raise an OSError the first time it gets here
    if LIFECYCLE_IO_ERROR_AT is `name`."""
    if os.environ.get(CRASH_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_AT_ENV) == name:
        time.sleep(PAUSE_SECONDS)
    if os.environ.get(IO_ERROR_AT_ENV) == name and name not in _failed:
        _failed.add(name)
        raise OSError(errno.EIO, f"injected I/O error at {name} ({IO_ERROR_AT_ENV})")
