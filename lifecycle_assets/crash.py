"""Named crash points: where the fault-injection tests kill a process, as a power cut would.

Modelled on Dagster's own crash-injection tests: code calls `crash_point("after-register")`
between two steps whose partial completion must be recoverable; when the environment variable
LIFECYCLE_CRASH_AT names that point, the process sends itself SIGKILL there (no `finally`, no
atexit, no flush). Unset, a crash point costs one dictionary lookup.

The same points can hold a process instead (LIFECYCLE_PAUSE_AT): a test that must interrupt a
run while it is running (Ctrl-C, termination) pauses it there rather than racing a run that
may finish first. The pause is a plain sleep, so a signal or a run's termination ends it.
"""

from __future__ import annotations

import os
import signal
import time

CRASH_AT_ENV = "LIFECYCLE_CRASH_AT"
PAUSE_AT_ENV = "LIFECYCLE_PAUSE_AT"
# Long enough for any test to act on the paused run; short enough not to hang one that forgot it.
PAUSE_SECONDS = 600.0


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if LIFECYCLE_CRASH_AT is `name`; hold it for
    PAUSE_SECONDS if LIFECYCLE_PAUSE_AT is `name`."""
    if os.environ.get(CRASH_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_AT_ENV) == name:
        time.sleep(PAUSE_SECONDS)
