"""What only training needs, prepared beside the first ingest run of `lifecycle run`.

Ingest touches neither MLflow nor the promotion ledger, so the registry part of the start-up
reconcile (its queries and writes) runs in a thread while the first window is ingested.
Everything that imports a module or migrates a database happens first, in the caller's thread,
before any Dagster run: two threads importing one module graph at once can hand one of them a
partly initialised module, and alembic migrates through process-wide state that Dagster uses
for each new run's database. So `start` opens the registry here: a new SQLite store is created
from MLflow's schema file (`registry/mlflow_schema`: milliseconds, no migration), else, saying
so on stderr, by MLflow itself; MLflow's tracking and registry stores are opened (their modules
imported). The thread then imports nothing (a test checks it).
`lifecycle run` starts this after the pre-flight (nothing is written before the data is known
usable) and waits for it before the first training run: the registry is reconciled before
anything reads it, as before, and an error of the set-up is raised there. A store of another
database (PostgreSQL, MySQL) is reconciled in `start`, before the first run.

The thread appends its span (wall start and end on `time.perf_counter`, and its CPU seconds) to
`SPANS`: the lifecycle benchmark takes that CPU out of the compute it measures where it overlaps
asset bodies, so work moved here never counts as compute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from mlflow import MlflowClient

from lifecycle_assets.config import Settings
from lifecycle_assets.recovery import Recovery, reconcile_registry, recover_registry, report
from lifecycle_assets.registry.tracking import configure_mlflow

SQLITE = "sqlite:///"


@dataclass(frozen=True)
class Span:
    """A stretch of set-up work beside the runs (`time.perf_counter`) and its CPU seconds."""

    start: float
    end: float
    cpu: float


SPANS: list[Span] = []


def open_registry(settings: Settings) -> MlflowClient:
    """MLflow pointed at the settings' store, its tracking and registry stores opened (and their
    modules imported); a new SQLite store created from MLflow's schema file, else by MLflow."""
    client = configure_mlflow(settings)
    client.search_registered_models(max_results=1)  # opens the registry store
    return client


class TrainingSetUp:
    """The registry opened in `start`, reconciled in a thread; `wait` returns the result."""

    def __init__(self, names: Iterable[str], settings: Settings | None = None) -> None:
        self._names = list(names)
        self._settings = settings or Settings.from_env()
        self._recovery: Recovery | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TrainingSetUp:
        """Open the registry, then start the thread; a store of another database is reconciled
        here, first (its migrations, if it needs any, would run beside Dagster's)."""
        uri = self._settings.mlflow_tracking_uri
        if not (uri.startswith(SQLITE) or uri.startswith(("http://", "https://"))):
            self._recovery = recover_registry(self._names)
            return self
        try:
            client = open_registry(self._settings)
        except BaseException as error:  # raised where the set-up is awaited, as the thread's
            self._error = error
            return self
        self._thread = threading.Thread(
            target=self._run, args=(client,), name="lifecycle-training-setup"
        )
        self._thread.start()
        return self

    def _run(self, client: MlflowClient) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            self._recovery = reconcile_registry(client, self._names)
        except BaseException as error:  # raised again in the caller's thread by `wait`
            self._error = error
        finally:
            SPANS.append(Span(started, time.perf_counter(), time.thread_time() - cpu))

    def wait(self) -> Recovery:
        """The reconcile's result (said in one line if it settled anything); its error, raised."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        recovery, self._recovery = self._recovery, None
        return report(recovery) if recovery is not None else Recovery()
