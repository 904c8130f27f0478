"""Dagster's embedded SQLite storage, writing a step's per-partition events in one transaction.

A run over a window of days records, per day and asset, one ASSET_MATERIALIZATION_PLANNED and one
ASSET_MATERIALIZATION: 240 events for a 60-day ingest run. Dagster's SQLite event log opens a new
engine and transaction on the run's database and another on the index database for each event
(10-20 ms apiece, most of the Dagster time of an ingest run). Dagster hands such events over as
one batch when DAGSTER_EVENT_BATCH_SIZE is set, but only its PostgreSQL storage writes a batch
at once. This one writes a batch in one transaction per database, each event's rows exactly as
`SqliteEventLogStorage.store_event` writes them: every day keeps its own event, partition, data
version and tags. Any other batch is written event by event, as before.

Each run also gets its own database file, which Dagster creates through SQLAlchemy's
`create_all` and an alembic stamp (0.15-0.4 s, six times per `lifecycle run`), as it creates a
new home's three databases (1.4-1.8 s): each is created here from Dagster's schema of it, dumped
from databases Dagster made (`dagster_schema`): the same file, in milliseconds.

The project's `dagster.yaml` names `BatchingSqliteStorage` (the default SQLite layout under
DAGSTER_HOME); creating it turns Dagster's batching on for the process. Its event log also
keeps each database's SQLAlchemy engine (still a new connection per event, closed after it), and
holds one more connection open on each database, so that closing one no longer checkpoints its
log: a commit then appends to it without waiting for the disk, and a thread checkpoints it a
fraction of a second later so a UI watching the file still sees each event (`sqlite_wal`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster._config import StringSource
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs.sqlite import SqliteRunStorage
from dagster._core.storage.schedules.sqlite import SqliteScheduleStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from lifecycle_assets import dagster_schema
from lifecycle_assets.sqlite_schema import is_new
from lifecycle_assets.sqlite_wal import WalHolder

# How many events of one batch Dagster buffers before it writes them (a run's planned events, a
# step's materializations): more than any window has days.
BATCH_SIZE = "10000"
BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"
# Engines kept, one per database: the index and the runs a process is writing.
KEPT_ENGINES = 8


def _engine(url: str) -> Engine:
    """An engine of one of Dagster's databases: a new connection per use (NullPool), each with
    `synchronous=NORMAL`, the setting SQLite advises for a WAL database: a commit writes the log
    without waiting for the disk (the log is flushed at each checkpoint, `sqlite_wal`). A
    process that crashes loses nothing; a power cut may lose the events of the last fraction of
    a second (never the database), which the next run's recovery settles as for a killed run."""
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    )

    @sqlalchemy_event.listens_for(engine, "connect")
    def _synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    return engine


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose batches of asset events share one transaction per shard,
    whose databases are held open (`sqlite_wal`), and whose new run databases are made from
    Dagster's schema of one (`dagster_schema`)."""

    _engines: OrderedDict[str, Engine] | None = None
    _wal: WalHolder | None = None

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        """Dagster's `_connect` (a new connection per use, closed after it, in one transaction),
        with each database's engine kept instead of built and disposed for every event (building
        one cost 1-2 ms of CPU per event, hundreds of times per run), and one more connection
        held open on it beside them (`sqlite_wal`: a close then no longer checkpoints)."""
        with self._db_lock:
            if self._engines is None:
                self._engines, self._wal = OrderedDict(), WalHolder()
            engines, wal = self._engines, self._wal
            engine = engines.pop(shard, None) or _engine(self.conn_string_for_shard(shard))
            engines[shard] = engine
            while len(engines) > KEPT_ENGINES:
                dropped, old = engines.popitem(last=False)
                old.dispose()
                wal.release(self.path_for_shard(dropped))
            path = self.path_for_shard(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            wal.hold(path)
            with engine.connect() as conn, conn.begin():
                yield conn
            wal.used(path)

    def dispose(self) -> None:
        super().dispose()
        self._let_go()

    def wipe(self) -> None:
        """Dagster's wipe deletes the run databases' files: the held connections go first."""
        self._let_go()
        super().wipe()

    def _let_go(self) -> None:
        """Dispose of the kept engines and close the held connections (each checkpointed)."""
        with self._db_lock:
            for engine in (self._engines or {}).values():
                engine.dispose()
            if self._wal is not None:
                self._wal.close()
            self._engines, self._wal = None, None

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """A new run database from Dagster's schema of one (`dagster_schema`: milliseconds, not
        the 0.15-0.4 s of `create_all` and an alembic stamp); anything else as Dagster does."""
        database = engine.url.database
        path = Path(database) if database else None
        is_run = path is not None and path != Path(self.path_for_shard(INDEX_SHARD_NAME))
        if is_run and is_new(path) and dagster_schema.create(dagster_schema.RUN, path):
            return
        super()._initdb(engine, for_index_shard)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Consecutive asset events of one run together; any other event by itself, in order
        (a run's planned checks come between its assets' planned materializations)."""
        chunk: list[EventLogEntry] = []
        for event in events:
            if chunk and event.run_id != chunk[0].run_id:
                self._store_asset_events(chunk)
                chunk = []
            if event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS:
                chunk.append(event)
                continue
            self._store_asset_events(chunk)
            chunk = []
            self.store_event(event)
        self._store_asset_events(chunk)

    def _store_asset_events(self, events: list[EventLogEntry]) -> None:
        """Asset events of one run: what `store_event` writes for each, in two transactions."""
        if len(events) < 2:
            for event in events:
                self.store_event(event)
            return
        statements = [self.prepare_insert_event(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        # Mirrored in the index shard, with the events' tags (one insert: Dagster looks the tags
        # table up on a new connection per call) and each asset's row, in the events' order.
        with self.index_transaction() as conn:
            event_ids = []
            for statement in statements:
                with db_result(conn, statement) as result:
                    event_id = result.inserted_primary_key[0]
                if event_id is None:
                    raise DagsterInvariantViolationError(
                        "Cannot store asset event tags for null event id."
                    )
                event_ids.append(event_id)
            self._store_asset_event_tags(conn, events, event_ids)
            for event, event_id in zip(events, event_ids, strict=True):
                self._store_asset_event(conn, event, event_id)


class _HeldDatabase:
    """For Dagster's storages of one SQLite database (runs, schedules): as the event log's, one
    engine kept (not one built per use), commits with `synchronous=NORMAL`, and one connection
    held open beside the connection per use (`sqlite_wal`)."""

    _conn_string: str
    _held: tuple[Engine, WalHolder] | None = None
    _held_lock = threading.Lock()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self._held_lock:
            if self._held is None:
                self._held = (_engine(self._conn_string), WalHolder())
            engine, wal = self._held
        path = str(engine.url.database)
        wal.hold(path)
        with engine.connect() as conn, conn.begin():
            yield conn
        wal.used(path)

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        with self._held_lock:
            held, self._held = self._held, None
        if held is not None:
            held[0].dispose()
            held[1].close()


class HeldSqliteRunStorage(_HeldDatabase, SqliteRunStorage):
    """Dagster's SQLite run storage with its database held (`_HeldDatabase`)."""


class HeldSqliteScheduleStorage(_HeldDatabase, SqliteScheduleStorage):
    """Dagster's SQLite schedule storage with its database held (`_HeldDatabase`)."""


class BatchingSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage under `base_dir`, with the batching event log and the
    run and schedule databases held open (`_HeldDatabase`)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # Dagster sends a step's asset events as one batch only when this is set.
        os.environ.setdefault(BATCH_SIZE_VARIABLE, BATCH_SIZE)
        self.base_dir = base_dir
        dagster_schema.create_new(Path(base_dir))  # a new home's databases, in milliseconds
        self._run_storage = HeldSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = HeldSqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"base_dir": StringSource}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]
    ) -> BatchingSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
