"""Dagster's embedded SQLite storage, writing a step's per-partition events in one transaction.

A run over a window of days records, per day and asset, one ASSET_MATERIALIZATION_PLANNED and one
ASSET_MATERIALIZATION: 240 events for a 60-day ingest run. Dagster's SQLite event log opens a new
engine and transaction on the run's database and another on the index database for each event
(10-20 ms apiece, most of the Dagster time of an ingest run). Dagster hands such events over as
one batch when DAGSTER_EVENT_BATCH_SIZE is set, but only its PostgreSQL storage writes a batch
at once. This one writes a batch in one transaction per database, each event's rows exactly as
`SqliteEventLogStorage.store_event` writes them: every day keeps its own event, partition, data
version and tags. Any other batch is written event by event, as before.

The project's `dagster.yaml` names `BatchingSqliteStorage` (the default SQLite layout under
DAGSTER_HOME); creating it turns Dagster's batching on for the process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from dagster._config import StringSource
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite import SqliteRunStorage
from dagster._core.storage.schedules.sqlite import SqliteScheduleStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData

# How many events of one batch Dagster buffers before it writes them (a run's planned events, a
# step's materializations): more than any window has days.
BATCH_SIZE = "10000"
BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose batches of asset events share one transaction per shard."""

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
        # Mirrored in the index shard, with the event's tags and its asset's row.
        with self.index_transaction() as conn:
            for event, statement in zip(events, statements, strict=True):
                with db_result(conn, statement) as result:
                    event_id = result.inserted_primary_key[0]
                if event_id is None:
                    raise DagsterInvariantViolationError(
                        "Cannot store asset event tags for null event id."
                    )
                self._store_asset_event_tags(conn, [event], [event_id])
                self._store_asset_event(conn, event, event_id)


class BatchingSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage under `base_dir`, with the batching event log."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # Dagster sends a step's asset events as one batch only when this is set.
        os.environ.setdefault(BATCH_SIZE_VARIABLE, BATCH_SIZE)
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
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
