"""Reconcile at start-up: nothing a killed `lifecycle run` left behind outlives the next one.

Run first by `lifecycle run` (and, for the registry part, by every alias operation). It ends
the MLflow runs and Dagster runs whose process is gone, frees the Dagster concurrency-pool slots
those runs held (a killed run otherwise holds its pool slot forever, and the next run of the
model would wait for it forever), marks versions a crash left without their required tags, and
settles PENDING alias-ledger entries from what the registry shows.

Dagster's run monitoring does the Dagster part for runs the daemon launched; runs executed in
process by the CLI have no monitor, hence this.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.storage.runs.sqlite import SqliteRunStorage

from lifecycle_assets.registry.aliases import reconcile
from lifecycle_assets.registry.ledger import PENDING, Ledger
from lifecycle_assets.registry.owner import TAG_HOST, TAG_RUN_WORKER
from lifecycle_assets.registry.recovery import (
    end_orphaned_runs,
    mark_incomplete_versions,
    process_gone,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass
class Recovery:
    """Everything one reconcile settled, for a one-line report."""

    mlflow_runs_failed: list[str] = field(default_factory=list)
    versions_marked_incomplete: list[str] = field(default_factory=list)
    dagster_runs_failed: list[str] = field(default_factory=list)
    pool_slots_freed: int = 0
    # Reported, not settled: STARTED runs whose process cannot be checked from this host.
    dagster_runs_unchecked: list[str] = field(default_factory=list)
    ledger_entries_settled: int = 0
    # Aliases changed in MLflow behind the ledger, now recorded as `external` (one line each):
    # said on their own, they are no crash.
    outside_changes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(
            (
                self.mlflow_runs_failed,
                self.versions_marked_incomplete,
                self.dagster_runs_failed,
                self.pool_slots_freed,
                self.ledger_entries_settled,
            )
        )

    def summary(self) -> str:
        return (
            f"reconciled after a crash: {len(self.mlflow_runs_failed)} MLflow run(s) and "
            f"{len(self.dagster_runs_failed)} Dagster run(s) ended as failed, "
            f"{self.pool_slots_freed} pool slot(s) freed, "
            f"{len(self.versions_marked_incomplete)} version(s) marked incomplete, "
            f"{self.ledger_entries_settled} ledger entr(y/ies) settled"
        )

    def unchecked_note(self) -> str:
        """The STARTED runs left alone, in one line ("" when there are none)."""
        if not self.dagster_runs_unchecked:
            return ""
        return (
            f"left {len(self.dagster_runs_unchecked)} STARTED run(s) alone, their process cannot "
            f"be checked from {socket.gethostname()}: {', '.join(self.dagster_runs_unchecked)}"
        )


def _run_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that started the run (recorded on its RUN_START event)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
    ).records
    event = records[0].event_log_entry.dagster_event if records else None
    return event.pid if event is not None else None


def _owner(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[str | None, int | None]:
    """The host and pid of the run's process: its worker's tag (set by the run's executor:
    defs/executors.py), else the host `lifecycle run` tagged it with at creation and the pid on
    its RUN_START event; a run without a host tag is this host's when the storage is a local
    SQLite file (no other machine shares it), else its host is unknown."""
    host, _, pid = run.tags.get(TAG_RUN_WORKER, "").rpartition(":")
    if host and pid.isdigit():
        return host, int(pid)
    if TAG_HOST in run.tags:
        host = run.tags[TAG_HOST]
    elif isinstance(instance.run_storage, SqliteRunStorage):
        host = socket.gethostname()
    else:
        return None, None
    return host, _run_pid(instance, run.run_id)


@dataclass
class OrphanScan:
    """STARTED runs ended because their process is gone, and those left alone because no
    process of theirs can be checked from here ("<run id> (<why>)")."""

    failed: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def scan_orphaned_dagster_runs(instance: dg.DagsterInstance, host: str | None = None) -> OrphanScan:
    """Mark failed every STARTED run whose process on this host is gone; name the STARTED runs
    whose process cannot be checked here (another host, or none recorded yet) and leave them."""
    host = host or socket.gethostname()
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    )
    scan = OrphanScan()
    for record in records:
        run = record.dagster_run
        run_host, pid = _owner(instance, run)
        if run_host is None:
            scan.unchecked.append(f"{run.run_id} (no host recorded)")
            continue
        if run_host != host:
            scan.unchecked.append(f"{run.run_id} (on {run_host})")
            continue
        if pid is None or not process_gone(pid, record.start_time):
            continue
        instance.report_run_failed(
            run, f"reconciled: the run's process ({pid} on {host}) is gone; it was killed"
        )
        scan.failed.append(run.run_id)
    return scan


def fail_orphaned_dagster_runs(instance: dg.DagsterInstance, host: str | None = None) -> list[str]:
    """Mark failed every STARTED run whose process on this host is gone."""
    return scan_orphaned_dagster_runs(instance, host).failed


def free_pool_slots(instance: dg.DagsterInstance) -> int:
    """Free the concurrency-pool slots held by runs that are no longer in progress."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return 0
    holders = storage.get_concurrency_run_ids()
    if not holders:
        return 0
    finished = instance.get_run_records(
        filters=dg.RunsFilter(run_ids=list(holders), statuses=list(FINISHED_STATUSES))
    )
    return sum(storage.free_concurrency_slots_for_run(r.dagster_run.run_id) or 0 for r in finished)


def _registered(client: MlflowClient, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def reconcile_registry(client: MlflowClient, names: Iterable[str]) -> Recovery:
    """The MLflow and ledger part, for the given models (skips models not registered yet)."""
    recovery = Recovery(mlflow_runs_failed=end_orphaned_runs(client))
    ledger = Ledger.default()
    for name in names:
        if not _registered(client, name):
            continue
        marked = mark_incomplete_versions(client, name)
        recovery.versions_marked_incomplete += [f"{name} v{v}" for v in marked]
        recovery.ledger_entries_settled += len(ledger.entries(name, state=PENDING))
        recorded = reconcile(client, name, ledger=ledger)
        recovery.outside_changes += [
            f"{name} `{e.alias}`: {e.reason}" for e in recorded if e.kind == "external"
        ]
    return recovery


def recover_dagster(instance: dg.DagsterInstance) -> Recovery:
    """The Dagster part: runs whose process is gone end as failed, then their pool slots."""
    scan = scan_orphaned_dagster_runs(instance)
    return Recovery(
        dagster_runs_failed=scan.failed,
        pool_slots_freed=free_pool_slots(instance),
        dagster_runs_unchecked=scan.unchecked,
    )


def recover_registry(names: Iterable[str]) -> Recovery:
    """The MLflow and ledger part on the settings' store (created and migrated if new)."""
    from lifecycle_assets.config import Settings
    from lifecycle_assets.registry.tracking import configure_mlflow

    return reconcile_registry(configure_mlflow(Settings.from_env()), names)


def reconcile_all(
    instance: dg.DagsterInstance, client: MlflowClient, names: Iterable[str]
) -> Recovery:
    """Everything above: Dagster runs first (their slots), then MLflow and the ledger."""
    dagster = recover_dagster(instance)
    recovery = reconcile_registry(client, names)
    recovery.dagster_runs_failed = dagster.dagster_runs_failed
    recovery.pool_slots_freed = dagster.pool_slots_freed
    recovery.dagster_runs_unchecked = dagster.dagster_runs_unchecked
    return recovery


def report(recovery: Recovery) -> Recovery:
    """Say in one line what a reconcile settled, if anything, in one more the runs it could
    not check, and one per alias it found changed outside the ledger."""
    if recovery:
        logging.getLogger("lifecycle").warning(recovery.summary())
    if recovery.dagster_runs_unchecked:
        logging.getLogger("lifecycle").warning(recovery.unchecked_note())
    for line in recovery.outside_changes:
        logging.getLogger("lifecycle").warning(line)
    return recovery


def recover_at_start(instance: dg.DagsterInstance, names: Iterable[str]) -> Recovery:
    """What `lifecycle run` calls first: reconcile everything, say so in one line if needed.

    `lifecycle run` itself splits it: the Dagster part before its first run, the registry part
    in `training_setup` while the first window is ingested (nothing of ingest touches MLflow).
    """
    from lifecycle_assets.config import Settings
    from lifecycle_assets.registry.tracking import configure_mlflow

    return report(reconcile_all(instance, configure_mlflow(Settings.from_env()), names))
