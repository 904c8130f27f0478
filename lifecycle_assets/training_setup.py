"""What only training needs, prepared in a thread while `lifecycle run` ingests the first window.

Ingest touches neither MLflow nor the promotion ledger, so the registry part of the start-up
reconcile need not hold up the first Dagster run. The thread imports nothing new beside the
ingest (it starts after the definitions imported theirs): modules a step imports first, such as
skops for the registration, are imported by that step in its own thread.
`lifecycle run` starts this after the pre-flight (nothing is written before the data is known
usable) and waits for it before the first training run: the registry is reconciled before
anything reads it, as before, and an error of the reconcile is raised there.

A new SQLite store is created from MLflow's schema file (`registry/mlflow_schema`: its tables
and alembic revision in one transaction, milliseconds, no MLflow import), so MLflow opens it
without migrating anything. When the file does not fit (another MLflow version installed, a file
already holding some tables), a child process lets MLflow create and migrate it (2-4 s, said on
stderr): alembic runs a migration through process-wide module state, and Dagster runs its own
(stamping each new run's event database) in this process meanwhile. Only a store whose
migrations this process cannot be running (an existing SQLite store, an MLflow server) is
reconciled in the thread; another database is reconciled before the first run, as before.

Each set-up appends its spans (wall start and end on `time.perf_counter`, and CPU seconds: the
thread's own, and apart those of the child process) to `SPANS`: the lifecycle benchmark takes
that CPU out of the compute it measures where it overlaps asset bodies, so work moved here never
counts as compute.
"""

from __future__ import annotations

import logging
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lifecycle_assets.config import Settings
from lifecycle_assets.recovery import Recovery, recover_registry, report
from lifecycle_assets.registry import mlflow_schema
from lifecycle_assets.registry.mlflow_schema import store_created
from lifecycle_assets.registry.reader import sqlite_path

SQLITE = "sqlite:///"
# Creates (and migrates) the store named by argv[1]; MLflow alone, nothing of the project.
CREATE_STORE = "import sys, mlflow; mlflow.MlflowClient(sys.argv[1], sys.argv[1])"


@dataclass(frozen=True)
class Span:
    """A stretch of set-up work beside the runs (`time.perf_counter`) and its CPU seconds."""

    start: float
    end: float
    cpu: float


SPANS: list[Span] = []


def create_sqlite_store(uri: str) -> None:
    """Create and migrate a new SQLite store in a child process; its error as one line."""
    done = subprocess.run(
        [sys.executable, "-c", CREATE_STORE, uri], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise RuntimeError(f"creating the MLflow store {uri} failed: {lines[-1]}")


def create_new_store(uri: str, path: Path) -> None:
    """The store at `path` from MLflow's schema file; else, saying why on stderr, by MLflow in
    a child process (unless someone else created it meanwhile)."""
    refused = mlflow_schema.create_store(path)
    if refused is None or store_created(path):
        return
    logging.getLogger("lifecycle").warning(
        "note: %s: MLflow creates the store in a child process (slower)", refused
    )
    with child_span():
        create_sqlite_store(uri)


@contextmanager
def child_span() -> Iterator[None]:
    """Record the CPU seconds of the child processes waited for inside (the store's creation):
    they run on a core the ingest beside them could have used."""
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        yield
    finally:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        SPANS.append(Span(started, time.perf_counter(), cpu))


class TrainingSetUp:
    """The registry reconcile, in a thread; `wait` returns its result."""

    def __init__(self, names: Iterable[str], settings: Settings | None = None) -> None:
        self._names = list(names)
        self._uri = (settings or Settings.from_env()).mlflow_tracking_uri
        self._recovery: Recovery | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lifecycle-training-setup")

    def start(self) -> TrainingSetUp:
        """Start the thread; a store of another database is reconciled here, first."""
        if not (self._uri.startswith(SQLITE) or self._uri.startswith(("http://", "https://"))):
            # Its migrations, if it needs any, would run in this process beside Dagster's.
            self._recovery = recover_registry(self._names)
        self._thread.start()
        return self

    def _run(self) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            if self._recovery is None:
                path = sqlite_path(self._uri)
                if path is not None and not store_created(path):
                    create_new_store(self._uri, path)
                self._recovery = recover_registry(self._names)
        except BaseException as error:  # raised again in the caller's thread by `wait`
            self._error = error
        finally:
            SPANS.append(Span(started, time.perf_counter(), time.thread_time() - cpu))

    def wait(self) -> Recovery:
        """The reconcile's result (said in one line if it settled anything); its error, raised."""
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        recovery, self._recovery = self._recovery, None
        return report(recovery) if recovery is not None else Recovery()
