"""Read registered versions and aliases for the CLI, from the MLflow SQLite file when it is one.

Why not MlflowClient: importing MLflow costs 1.5-2.3 s per process and opening its SQLite store
(engine, table checks, alembic schema verification) another 2.3-2.6 s, while `status` needs four
rows. Why not a local index written at registration and promotion: that would be a second copy
of the registry that a crash or a change made in the MLflow UI could leave behind. So the MLflow
store stays the one source of truth and this reads the very rows MLflow reads, with `sqlite3` in
read-only mode (`mode=ro`: no write, no migration). Any other tracking URI, or a file whose
schema lacks the expected tables, goes through MlflowClient as before.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from lifecycle_assets.config import Settings

# MLflow marks a deleted version this way until it is purged.
_DELETED = "Deleted_Internal"
_WORKSPACE = "default"


class SchemaMismatch(RuntimeError):
    """The SQLite file does not hold the registry tables this reader knows."""


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///...` URI, None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(urllib.parse.unquote(uri[len("sqlite:///") :]).split("?", 1)[0])


class SqliteRegistry:
    """Registered versions and aliases, read-only, shaped like `ModelRef.to_dict()`."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        tables = {row[0] for row in self.connection.execute("select name from sqlite_master")}
        needed = {"model_versions", "model_version_tags", "registered_model_aliases"}
        if not needed <= tables:
            raise SchemaMismatch(f"{path} lacks {sorted(needed - tables)}")

    def version(self, name: str, version: str) -> dict[str, Any] | None:
        row = self.connection.execute(
            "select version, run_id, source from model_versions "
            "where workspace = ? and name = ? and version = ? and current_stage != ?",
            (_WORKSPACE, name, int(version), _DELETED),
        ).fetchone()
        if row is None:
            return None
        tags = dict(
            self.connection.execute(
                'select "key", value from model_version_tags '
                "where workspace = ? and name = ? and version = ?",
                (_WORKSPACE, name, row[0]),
            ).fetchall()
        )
        aliases = [
            alias
            for (alias,) in self.connection.execute(
                "select alias from registered_model_aliases "
                "where workspace = ? and name = ? and version = ? order by alias",
                (_WORKSPACE, name, row[0]),
            )
        ]
        return {
            "name": name,
            "version": str(row[0]),
            "run_id": row[1] or "",
            "source": row[2] or "",
            "aliases": aliases,
            "tags": {k: v if v is not None else "" for k, v in tags.items()},
        }

    def resolve(self, name: str, alias_or_version: str) -> dict[str, Any] | None:
        """A version number or an alias; None when the alias is not set."""
        if alias_or_version.isdigit():
            return self.version(name, alias_or_version)
        row = self.connection.execute(
            "select version from registered_model_aliases "
            "where workspace = ? and name = ? and alias = ?",
            (_WORKSPACE, name, alias_or_version),
        ).fetchone()
        return None if row is None else self.version(name, str(row[0]))


def resolver(settings: Settings):
    """`resolve(name, alias_or_version) -> dict | None`: from the SQLite file when the tracking
    store is one (and exists), else through MlflowClient."""
    path = sqlite_path(settings.mlflow_tracking_uri)
    if path is not None and not path.exists():
        return lambda name, alias_or_version: None  # no store yet: nothing is registered
    if path is not None:
        try:
            return SqliteRegistry(path).resolve
        except (sqlite3.Error, SchemaMismatch):
            pass
    from lifecycle_assets.registry.models import resolve
    from lifecycle_assets.registry.tracking import configure_mlflow

    client = configure_mlflow(settings)

    def through_mlflow(name: str, alias_or_version: str) -> dict[str, Any] | None:
        ref = resolve(client, name, alias_or_version)
        return None if ref is None else ref.to_dict()

    return through_mlflow
