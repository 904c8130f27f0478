"""The client of alias moves: MLflow's SQLite file directly when that is safe, else MlflowClient.

`promote`, `rollback` and `canary` are one short process each; importing MLflow and opening its
store costs 2-5 s there before 0.2 s of work. On the embedded default (a SQLite file at the
schema the pinned MLflow creates) `SqliteRegistry` reads through `reader.SqliteReader`
(read-only) and writes through `sqlite_alias_writer.SqliteAliasWriter` (MLflow's own rows, one
transaction), and MLflow is never imported. The ledger and `verify` guard every move as on any
other store: they are above this door, not in it.

Any other SQLite file (another schema revision, missing tables) falls back to MlflowClient and
says why (`on_fallback`: a logged warning unless the caller prints it): nothing silent. A
tracking server (team mode) always gets MlflowClient: its webhooks and permissions live there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lifecycle_assets.config import Settings
from lifecycle_assets.registry.changes import RegistryChange
from lifecycle_assets.registry.reader import SchemaMismatch, SqliteReader, sqlite_path
from lifecycle_assets.registry.sqlite_alias_writer import SchemaRefused, SqliteAliasWriter


class SqliteRegistry:
    """A SQLite registry without MLflow: `reader` and `writer` serve every alias operation;
    anything else asked of it (ending a run a crash left RUNNING) opens a full MlflowClient."""

    def __init__(self, settings: Settings, reader: SqliteReader, writer: SqliteAliasWriter):
        self.settings, self.reader, self.writer = settings, reader, writer
        self.tracking_uri = settings.mlflow_tracking_uri
        self._full: Any = None

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        """What recovery writes on a version (the incomplete mark), through the writer."""
        self.writer.apply(RegistryChange(name, version_tags={str(version): {key: str(value)}}))

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):  # not set yet (a copy, a pickle): no MLflow for that
            raise AttributeError(attribute)
        if self._full is None:
            from lifecycle_assets.registry.tracking import configure_mlflow

            self._full = configure_mlflow(self.settings)
        return getattr(self._full, attribute)


def _direct(settings: Settings) -> SqliteRegistry | str | None:
    """The direct registry, or why a SQLite store cannot have one; None for a server.

    A file that is locked or unreadable raises (`sqlite3.Error`): MLflow could not use it
    either, and the CLI says so in one line."""
    path = sqlite_path(settings.mlflow_tracking_uri)
    if path is None:
        return None
    if not path.is_file():
        return f"{path} does not exist yet"
    try:
        reader = SqliteReader(path)
        return SqliteRegistry(settings, reader, SqliteAliasWriter(path))
    except (SchemaRefused, SchemaMismatch) as error:
        return str(error)


def _log_fallback(note: str) -> None:
    logging.getLogger(__name__).warning(note)


def registry_client(settings: Settings, on_fallback: Callable[[str], None] = _log_fallback) -> Any:
    """`SqliteRegistry` on a SQLite file at MLflow's schema, else the `configure_mlflow` client;
    on a SQLite file, `on_fallback` hears why first (before MLflow's own checks may refuse it)."""
    direct = _direct(settings)
    if isinstance(direct, SqliteRegistry):
        return direct
    if direct is not None:
        on_fallback(f"{direct}: alias moves go through MLflow (slower)")
    from lifecycle_assets.registry.tracking import configure_mlflow

    return configure_mlflow(settings)
