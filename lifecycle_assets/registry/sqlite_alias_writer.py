"""Alias moves written straight into MLflow's SQLite registry, in one transaction, without
importing MLflow.

Why: importing MLflow's registry store costs about 3 s per process (MLflow, SQLAlchemy,
alembic) before 0.2 s of work, and `promote`, `rollback` and `canary` are one short process
each. Why this is safe: an alias move is a handful of rows, and this writes exactly the rows
MLflow 3.17.2's `SqlAlchemyStore` writes for `set_registered_model_alias`,
`delete_registered_model_alias`, `set_model_version_tag`, `set_registered_model_tag` and
`delete_registered_model_tag`: a merge (insert, or update by primary key) or a delete of one row
of `registered_model_aliases`, `model_version_tags` or `registered_model_tags` in the default
workspace; none of those calls touches `last_updated_time`. It first checks what MlflowClient
and the store check (names, lengths, the model exists and is not a prompt, the version exists
and is not deleted), so it refuses what MLflow refuses, and writes nothing then.

It is guarded: it opens only a file whose `alembic_version` is `MLFLOW_SCHEMA_HEAD`, the
revision the pinned MLflow creates, and checks it again inside each transaction. Any other
file raises `SchemaRefused` and the caller goes through MlflowClient, saying so.
`test_sqlite_alias_writer` pins the revision against a file MLflow created and proves the
rows equal to MLflow's own. No webhook is skipped: MLflow fires webhooks in its tracking
server only, never for a client writing a local SQLite file.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lifecycle_assets.registry.changes import RegistryChange
from lifecycle_assets.registry.ledger import AliasError

# The newest alembic revision of MLflow 3.17.2's schema (`mlflow.store.db.utils.
# _get_latest_schema_revision()`); `test_sqlite_alias_writer` fails when an upgrade changes it.
MLFLOW_SCHEMA_HEAD = "dc11669786a5"

_WORKSPACE = "default"  # MLflow's single-tenant workspace, the only one a local file holds
_DELETED = "Deleted_Internal"  # `current_stage` of a deleted version until it is purged
_IS_PROMPT = "mlflow.prompt.is_prompt"  # a registered "model" that is a prompt: not a model
# `mlflow.utils.validation`: alias and tag-key characters, and the length limits.
_ALIAS = re.compile(r"^[\w\-]+$")
_ALIAS_VERSION = re.compile(r"^[vV]\d+$")
_TAG_KEY = re.compile(r"^[/\w.\- :]*$")
_MAX_ALIAS, _MAX_KEY, _MAX_VALUE = 255, 250, 100_000


class SchemaRefused(RuntimeError):
    """The file is not at the schema revision whose rows this writer knows."""


class RegistryRefused(AliasError):
    """The registry refuses the change as MLflow would (unknown model or version, bad name)."""


def _not_unique(name: str) -> bool:
    """MLflow's `path_not_unique`: a name that resolves to another as a path."""
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith(("..", "/"))


def _check_names(change: RegistryChange) -> None:
    name = change.model
    if not name.strip() or "/" in name or ":" in name or _not_unique(name):
        raise RegistryRefused(f"invalid registered model name {name!r}")
    for alias in change.aliases:
        if not _ALIAS.match(alias) or len(alias) > _MAX_ALIAS:
            raise RegistryRefused(f"invalid alias name {alias!r}")
        if alias.lower() == "latest" or _ALIAS_VERSION.match(alias):
            raise RegistryRefused(f"the alias name {alias!r} is reserved")
    tags = [*change.model_tags.items()]
    tags += [item for version_tags in change.version_tags.values() for item in version_tags.items()]
    for key, value in tags:
        if not _TAG_KEY.match(key) or _not_unique(key) or len(key) > _MAX_KEY:
            raise RegistryRefused(f"invalid tag key {key!r}")
        if value is not None and len(str(value)) > _MAX_VALUE:
            raise RegistryRefused(f"the value of tag {key!r} exceeds {_MAX_VALUE} characters")
    for version in [*change.aliases.values(), *change.version_tags]:
        if version is not None and not str(version).isdigit():
            raise RegistryRefused(f"a version is a number, not {version!r}")


def schema_revision(connection: sqlite3.Connection) -> str | None:
    """The alembic revision MLflow recorded in the file (None: not an MLflow file)."""
    try:
        row = connection.execute("select version_num from alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else row[0]


def _merge(
    connection: sqlite3.Connection,
    table: str,
    key: dict[str, Any],
    column: str,
    value: Any,
) -> None:
    """SQLAlchemy's `session.merge` of one row, as MLflow's store does it: insert, or update
    `column` of the row with this primary `key`; with `value` None, delete that row (MLflow's
    delete of an alias or tag, a no-op when there is none)."""
    names = [f'"{name}"' for name in key]
    if value is None:
        where = " and ".join(f"{name} = ?" for name in names)
        connection.execute(f"delete from {table} where {where}", [*key.values()])
        return
    connection.execute(
        f"insert into {table} ({', '.join(names)}, {column}) "
        f"values ({', '.join('?' * (len(key) + 1))}) "
        f"on conflict ({', '.join(names)}) do update set {column} = excluded.{column}",
        [*key.values(), value],
    )


class SqliteAliasWriter:
    """Applies `RegistryChange`s to one MLflow SQLite file, each in one transaction."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path, self.timeout = Path(path), timeout
        with self._connect() as connection:
            self._check_schema(connection)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # mode=rw: never create a file MLflow did not.
        uri = f"file:{self.path}?mode=rw"
        connection = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None)
        try:
            yield connection
        finally:
            connection.close()

    def _check_schema(self, connection: sqlite3.Connection) -> None:
        revision = schema_revision(connection)
        if revision != MLFLOW_SCHEMA_HEAD:
            raise SchemaRefused(
                f"{self.path} is at MLflow schema revision {revision or 'none'}; the direct "
                f"alias writer knows {MLFLOW_SCHEMA_HEAD} only"
            )

    def apply(self, change: RegistryChange) -> None:
        """All of `change` or none of it: aliases, then version tags, then model tags."""
        if not change:
            return
        _check_names(change)
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")  # the write lock first: no upgrade race
            try:
                self._check_schema(connection)
                self._write(connection, change)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _write(self, connection: sqlite3.Connection, change: RegistryChange) -> None:
        name = change.model
        self._model_exists(connection, name)
        for alias, version in change.aliases.items():
            where = {"workspace": _WORKSPACE, "name": name, "alias": alias}
            if version is not None:
                self._version_exists(connection, name, version)
            held = None if version is None else int(version)
            _merge(connection, "registered_model_aliases", where, "version", held)
        for version, tags in change.version_tags.items():
            self._version_exists(connection, name, version)
            for key, value in tags.items():
                where = {"workspace": _WORKSPACE, "key": key, "name": name, "version": int(version)}
                _merge(connection, "model_version_tags", where, "value", str(value))
        for key, value in change.model_tags.items():
            where = {"workspace": _WORKSPACE, "key": key, "name": name}
            _merge(connection, "registered_model_tags", where, "value", value)

    @staticmethod
    def _model_exists(connection: sqlite3.Connection, name: str) -> None:
        found = connection.execute(
            "select 1 from registered_models where workspace = ? and name = ?", (_WORKSPACE, name)
        ).fetchone()
        prompt = connection.execute(
            'select 1 from registered_model_tags where workspace = ? and name = ? and "key" = ?',
            (_WORKSPACE, name, _IS_PROMPT),
        ).fetchone()
        if found is None or prompt is not None:  # MlflowClient calls a prompt "not found" too
            raise RegistryRefused(f"no registered model named {name!r}")

    @staticmethod
    def _version_exists(connection: sqlite3.Connection, name: str, version: str) -> None:
        found = connection.execute(
            "select 1 from model_versions where workspace = ? and name = ? and version = ? "
            "and current_stage != ?",
            (_WORKSPACE, name, int(version), _DELETED),
        ).fetchone()
        if found is None:
            raise RegistryRefused(f"{name} has no version {version!r}")
