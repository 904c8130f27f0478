"""Each `bentoml serve` process its own Prometheus multiprocess folder.

BentoML keeps the metric files of a service's workers in `$BENTOML_HOME/prometheus_multiproc_dir`
and empties that folder whenever a `bentoml serve` starts: a second service on the same
BENTOML_HOME (the Bento beside `make serve`, a canary service, a test) wiped the first one's
files, and every `lifecycle_*` series vanished from the first service's `/metrics`, with no error.
In the serving process, before BentoML prepares the folder, it is pointed at one of its own,
`<that folder>/serve-<pid>`; the folders of serving processes that are gone are removed then.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PREFIX = "serve-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale(shared: Path) -> list[Path]:
    """Remove the folders of serving processes that no longer run; returns them."""
    removed = []
    for folder in shared.glob(f"{PREFIX}*") if shared.is_dir() else ():
        pid = folder.name.removeprefix(PREFIX)
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def use_own_folder() -> Path:
    """Point BentoML at this process's own folder (call in the serving process only)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    shared = Path(BentoMLContainer.prometheus_multiproc_dir.get())
    remove_stale(shared)
    own = shared / f"{PREFIX}{os.getpid()}"
    BentoMLContainer.prometheus_multiproc_dir.set(str(own))
    return own
