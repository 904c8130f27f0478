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

import psutil
from mlflow import MlflowClient
from mlflow.entities import RunStatus

from lifecycle_assets.registry.owner import TAG_HOST, TAG_PID
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


def end_orphaned_runs(client: MlflowClient, host: str | None = None) -> list[str]:
    """End as FAILED every RUNNING MLflow run whose process on this host is gone."""
    host = host or socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    running = client.search_runs(
        experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    ended = []
    for run in running:
        tags = run.data.tags
        pid = tags.get(TAG_PID, "")
        if tags.get(TAG_HOST) != host or not pid.isdigit():
            continue  # another machine's run, or one that cannot be judged
        if process_gone(int(pid), run.info.start_time / 1000 if run.info.start_time else None):
            client.set_tag(run.info.run_id, TAG_RECONCILED, f"process {pid} on {host} was gone")
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
            ended.append(run.info.run_id)
    return ended


def mark_incomplete_versions(client: MlflowClient, name: str) -> list[str]:
    """Tag `lifecycle.incomplete=true` on the model's versions that lack a required tag."""
    quoted = name.replace("'", "\\'")
    marked = []
    for version in client.search_model_versions(f"name = '{quoted}'"):
        tags = version.tags or {}
        missing = [tag for tag in REQUIRED_TAGS if not tags.get(tag)]
        if missing and tags.get(TAG_INCOMPLETE) != "true":
            client.set_model_version_tag(name, str(version.version), TAG_INCOMPLETE, "true")
            marked.append(str(version.version))
    return marked


def recover_registry(client: MlflowClient, name: str) -> RegistryRecovery:
    """Both of the above for one model: cheap enough to run before every alias operation."""
    return RegistryRecovery(end_orphaned_runs(client), mark_incomplete_versions(client, name))
