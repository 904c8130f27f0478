"""Named crash points: where the fault-injection tests kill a process, as a power cut would.

Modelled on Dagster's own crash-injection tests: code calls `crash_point("after-register")`
between two steps whose partial completion must be recoverable; when the environment variable
LIFECYCLE_CRASH_AT names that point, the process sends itself SIGKILL there (no `finally`, no
atexit, no flush). Unset, a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_AT_ENV = "LIFECYCLE_CRASH_AT"


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if LIFECYCLE_CRASH_AT is `name`."""
    if os.environ.get(CRASH_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
