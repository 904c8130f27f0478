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

Where the first ingest runs in a forked child (`forked_ingest`), `run_here` does the whole
set-up in the parent instead, on the other core, then loads training's modules
(`TRAINING_MODULES`) until the child has finished: the child has the interpreter to itself,
the steps of training find their modules loaded, and a run with nothing to train does not wait
for modules it will not use.

Each set-up appends its span (wall start and end on `time.perf_counter`, its CPU seconds, and
whether it ran in a thread beside the runs or in the parent beside the child) to `SPANS`: the
lifecycle benchmark takes that CPU out of the compute it measures where it may have slowed an
asset body, so work moved here never counts as compute.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lifecycle_assets.config import Settings
from lifecycle_assets.recovery import Recovery, reconcile_registry, recover_registry, report
from lifecycle_assets.registry.artifacts import skops_io

if TYPE_CHECKING:  # MLflow loads in `open_registry`: a forked ingest starts without it
    from mlflow import MlflowClient

SQLITE = "sqlite:///"
# What this process's steps import on first use (about 3 s at the default size: training, the
# Bento's build, the next model's schema checks), loaded by `run_here` beside the forked first
# ingest. A module missing here is only imported later, by its step.
TRAINING_MODULES = (
    "lifecycle_assets.registry.tracking",
    "lifecycle_assets.ml.training",
    "lifecycle_assets.ml.evaluation",
    "lifecycle_assets.ml.plots",
    "lifecycle_assets.compiled.compile",
    "lifecycle_assets.compiled.parity",
    "lifecycle_assets.serving.bento_store",
    "lifecycle_assets.serving.service",
    "lifecycle_assets.registry.ledger_pg",
    "mlflow.sklearn",
    "git",
    "pip_requirements_parser",
    "pandera.strategies",
)


@dataclass(frozen=True)
class Span:
    """A stretch of set-up work (`time.perf_counter`), its CPU seconds, and where it ran:
    in a thread beside the runs, or in the parent process beside a forked child's runs."""

    start: float
    end: float
    cpu: float
    beside: Literal["thread", "process"] = "thread"


SPANS: list[Span] = []


def load_training_stack(stop: Callable[[], bool] = lambda: False) -> None:
    """Import skops (`registry.artifacts.skops_io`) and `TRAINING_MODULES`, until `stop` says
    the wait they fill is over (the rest then loads in the steps that need it, if any do)."""
    skops_io()
    for name in TRAINING_MODULES:
        if stop():
            return
        importlib.import_module(name)


def open_registry(settings: Settings) -> MlflowClient:
    """MLflow pointed at the settings' store, its tracking and registry stores opened (and their
    modules imported); a new SQLite store created from MLflow's schema file, else by MLflow."""
    from lifecycle_assets.registry.tracking import configure_mlflow

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
        client = self._open()
        if client is not None:
            self._thread = threading.Thread(
                target=self._run, args=(client,), name="lifecycle-training-setup"
            )
            self._thread.start()
        return self

    def run_here(self, stop: Callable[[], bool] = lambda: False) -> None:
        """The whole set-up in this thread beside a forked child's ingest (`forked_ingest`), on
        the other core, then training's modules until `stop` (the child has finished: a run
        with nothing to train must not wait for them). `wait` returns its result."""
        started, cpu = time.perf_counter(), time.process_time()
        try:
            if (client := self._open()) is not None:
                self._reconcile(client)
            load_training_stack(stop)
        finally:
            elapsed = time.process_time() - cpu
            SPANS.append(Span(started, time.perf_counter(), elapsed, beside="process"))

    def _open(self) -> MlflowClient | None:
        """The registry's client when a reconcile is still to do (an SQLite or HTTP store);
        None when another database's store was reconciled here, or opening it failed (the
        error is raised by `wait`)."""
        uri = self._settings.mlflow_tracking_uri
        if not (uri.startswith(SQLITE) or uri.startswith(("http://", "https://"))):
            self._recovery = recover_registry(self._names)
            return None
        try:
            return open_registry(self._settings)
        except BaseException as error:  # raised where the set-up is awaited, as the thread's
            self._error = error
            return None

    def _run(self, client: MlflowClient) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            self._reconcile(client)
        finally:
            SPANS.append(Span(started, time.perf_counter(), time.thread_time() - cpu))

    def _reconcile(self, client: MlflowClient) -> None:
        try:
            self._recovery = reconcile_registry(client, self._names)
        except BaseException as error:  # raised again in the caller's thread by `wait`
            self._error = error

    def wait(self) -> Recovery:
        """The reconcile's result (said in one line if it settled anything); its error, raised."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        recovery, self._recovery = self._recovery, None
        return report(recovery) if recovery is not None else Recovery()
