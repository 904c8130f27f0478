"""Where a `lifecycle run` leaves its summary: one file per run, and the model's `last_run.json`.

Two runs of one model can overlap (a scheduled run and a manual one, two shells): one shared
file would hold whichever wrote last, and a run that named it would report the other run's
outcome. So each run writes `reports/<model>/runs/<training run id>.json` beside its run log,
never touched again, and names that file. `last_run.json` is a copy of the summary of the run
that finished last, stamped with its `training_run_id` and `finished_at`: both are written
under a per-model lock, so it is always one whole run's summary and never an older run's after
a newer one's. (On object storage there is no lock: each write is still one whole summary.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lifecycle_assets import storage
from lifecycle_assets.config import Settings

LAST_RUN = "last_run.json"


def summary_path(settings: Settings, model: str, run_id: str) -> Path:
    """The summary file of one run, beside its run log."""
    return settings.reports_dir / model / "runs" / f"{run_id}.json"


def last_run_path(settings: Settings, model: str) -> Path:
    return settings.reports_dir / model / LAST_RUN


@contextlib.contextmanager
def _model_lock(settings: Settings, model: str) -> Iterator[None]:
    """Exclusive across processes for one model's summaries (local storage only)."""
    folder = settings.reports_dir / model
    if storage.is_remote(folder):
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    with (Path(folder) / f".{LAST_RUN}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_summary(summary: Any, settings: Settings) -> Path:
    """Write the run's own summary file and `last_run.json`; returns the run's own file.

    `summary` is a `LifecycleSummary`; `finished_at` is stamped here, under the lock, so the
    run that took the lock last is the one `last_run.json` names."""
    with _model_lock(settings, summary.model_name):
        summary.finished_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        record = summary.to_dict()
        own = summary_path(settings, summary.model_name, summary.training_run_id)
        storage.write_json(own, record)
        storage.write_json(last_run_path(settings, summary.model_name), record)
    return own
