"""Settle what a killed process left behind in MLflow: open runs and half-registered versions.

A kill -9 runs no `finally`: the MLflow run of the training step stays RUNNING forever, and a
version created by a process that died before it was tagged would look promotable. The training
step tags its run with `lifecycle.host` and `lifecycle.pid`; a RUNNING run whose process is gone
from this host is ended as FAILED. A version lacking a required tag is tagged
`lifecycle.incomplete=true`, which `verify` refuses, so it can never hold an alias.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import psutil

from lifecycle_assets.registry.owner import TAG_HOST, TAG_PID
from lifecycle_assets.registry.reader import reader_of
from lifecycle_assets.registry.verify import REQUIRED_TAGS, TAG_INCOMPLETE

TAG_RECONCILED = "lifecycle.reconciled"


def process_gone(pid: int, started_at: float | None = None) -> bool:
    """True when no process `pid` runs here, or the one that does started after `started_at`
    (the pid was reused), or it is a zombie (killed, not yet reaped by its parent)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        created = process.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False  # someone else's process: alive as far as we can tell
    return started_at is not None and created > started_at + 1.0


@dataclass
class RegistryRecovery:
    """What was settled: MLflow run ids ended FAILED, versions marked incomplete."""

    failed_runs: list[str] = field(default_factory=list)
    incomplete_versions: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.failed_runs or self.incomplete_versions)


def end_orphaned_runs(client: Any, host: str | None = None) -> list[str]:
    """End as FAILED every RUNNING MLflow run whose process on this host is gone.

    The runs are found through `reader_of(client)` (read-only); only a run to end is written,
    through the client, so the common case (nothing to settle) opens no tracking store."""
    host = host or socket.gethostname()
    ended = []
    for run in reader_of(client).running_runs():
        pid = run.tags.get(TAG_PID, "")
        if run.tags.get(TAG_HOST) != host or not pid.isdigit():
            continue  # another machine's run, or one that cannot be judged
        if process_gone(int(pid), run.start_time / 1000 if run.start_time else None):
            client.set_tag(run.run_id, TAG_RECONCILED, f"process {pid} on {host} was gone")
            client.set_terminated(run.run_id, "FAILED")
            ended.append(run.run_id)
    return ended


def mark_incomplete_versions(client: Any, name: str) -> list[str]:
    """Tag `lifecycle.incomplete=true` on the model's versions that lack a required tag."""
    marked = []
    for version in reader_of(client).versions(name):
        tags = version.tags
        missing = [tag for tag in REQUIRED_TAGS if not tags.get(tag)]
        if missing and tags.get(TAG_INCOMPLETE) != "true":
            client.set_model_version_tag(name, version.version, TAG_INCOMPLETE, "true")
            marked.append(version.version)
    return marked


def recover_registry(client: Any, name: str) -> RegistryRecovery:
    """Both of the above for one model: cheap enough to run before every alias operation."""
    return RegistryRecovery(end_orphaned_runs(client), mark_incomplete_versions(client, name))
