"""A new DAGSTER_HOME's three databases created from Dagster's own schema, in milliseconds.

Why: Dagster creates a new home's run, event-log index and schedule databases through
SQLAlchemy's `create_all`, an alembic stamp (which loads its ~600 revision scripts) and data
migrations marked done one by one: 1.4-1.8 s before a new project's first run, where opening an
existing home takes 0.07 s. `dagster_schemas/*.sql` hold what that leaves in each file (tables,
indexes, the alembic revision, the migrations marked done), dumped from a home Dagster itself
created (`python -m lifecycle_assets.dagster_schema`, `make dagster-schema`). Executing a file in
one transaction gives the same database; Dagster then opens it as any home of its head revision
and adds what is the instance's own (its `instance_info` id). The migrations' timestamps are
written as the moment of creation, as Dagster writes them.

Guarded: used only when the installed Dagster is the version the files were dumped from and the
database is new (no table yet, checked inside the transaction); otherwise Dagster creates it.
`test_dagster_storage` proves a home made this way equals the one Dagster makes, and fails when
an upgrade changes what Dagster makes.
"""

from __future__ import annotations

import functools
import logging
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from lifecycle_assets import sqlite_schema
from lifecycle_assets.sqlite_schema import create_if_empty, is_new, statements

SCHEMA_DIR = Path(__file__).with_name("dagster_schemas")
# Each database of a home (its path under the home, as `DagsterSqliteStorage` lays it out) and
# its schema file; each run's own event-log database (`history/runs/<run id>.db`) has `run.sql`.
DATABASES = {
    "runs": Path("history") / "runs.db",
    "index": Path("history") / "runs" / "index.db",
    "schedules": Path("schedules") / "schedules.db",
}
RUN = "run"
EXAMPLE_RUN_ID = "00000000-0000-0000-0000-000000000000"
HEADER = "dagster {version}"
# Rows that are an instance's own, not the schema's: Dagster writes them when it opens the home.
OWN_TABLES = {"instance_info"}
# The data migrations Dagster marks done in a new database, with when: written as the moment the
# database is created (SQLite's clock is UTC, as `create_timestamp`'s default).
MIGRATIONS = "secondary_indexes"
NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
log = logging.getLogger("lifecycle")


def schema_file(name: str) -> Path:
    return SCHEMA_DIR / f"{name}.sql"


@functools.cache
def usable() -> str | None:
    """Why the files cannot create a home for the installed Dagster; None when they can."""
    installed = metadata.version("dagster")
    for name in [*DATABASES, RUN]:
        with schema_file(name).open() as schema:
            dumped = schema.readline().split()[-1]
        if dumped != installed:
            return (
                f"{schema_file(name).name} is Dagster {dumped}'s schema, {installed} is installed"
            )
    return None


@functools.cache
def _script(name: str) -> list[tuple[str, tuple[()]]]:
    """The statements of `name`'s schema file, read and split once per process."""
    text = schema_file(name).read_text()
    return [(statement, ()) for statement in statements(text, schema_file(name).name)]


def create(name: str, path: Path) -> bool:
    """Create the database `name` (a key of DATABASES, or RUN) at `path` from its schema file,
    in WAL mode as Dagster sets it; False, writing nothing, when the files do not fit the
    installed Dagster or the file already holds tables (another process made it)."""
    if usable() is not None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    return create_if_empty(path, _script(name), journal_mode="WAL")


def create_new(home: Path) -> None:
    """Create each database of the home at `home` that does not exist yet from its schema file
    (WAL, as Dagster sets it); when the files do not fit the installed Dagster, say so once and
    leave it to Dagster."""
    missing = [name for name, path in DATABASES.items() if is_new(home / path)]
    if not missing:
        return
    refused = usable()
    if refused is not None:
        log.warning("note: %s: Dagster creates the new home's databases itself (slower)", refused)
        return
    for name in missing:
        create(name, home / DATABASES[name])


def _row(table: str, row: tuple[Any, ...]) -> str | None:
    """A row of the dump: none of an instance's own tables; the migrations' timestamps are the
    creation's, not the dump's."""
    if table in OWN_TABLES:
        return None
    values = [sqlite_schema.literal(value) for value in row]
    if table == MIGRATIONS:
        values[2:4] = ["CURRENT_TIMESTAMP", NOW]  # create_timestamp, migration_completed
    return f'INSERT INTO "{table}" VALUES ({", ".join(values)});'


def dump(path: Path, version: str) -> str:
    """The schema file's text of the Dagster database at `path`."""
    header = [HEADER.format(version=version), "Written by `make dagster-schema`: do not edit."]
    return sqlite_schema.dump(path, header, _row)


def created_by_dagster(home: Path) -> None:
    """A new home at `home`, created by Dagster's own SQLite storage (no project storage)."""
    from dagster._core.storage.sqlite_storage import DagsterSqliteStorage

    storage = DagsterSqliteStorage.from_local(str(home))
    events = storage.event_log_storage
    for connection in (events.index_connection(), events.run_connection(EXAMPLE_RUN_ID)):
        with connection:
            pass  # each is created on first use
    storage.dispose()


def regenerate(target: Path = SCHEMA_DIR) -> str:
    """Dump the databases the installed Dagster creates into `target`; returns its version."""
    version = metadata.version("dagster")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        created_by_dagster(Path(folder))
        run = DATABASES["index"].with_name(f"{EXAMPLE_RUN_ID}.db")
        for name, path in [*DATABASES.items(), (RUN, run)]:
            (target / f"{name}.sql").write_text(dump(Path(folder) / path, version))
    return version


if __name__ == "__main__":
    written = regenerate()
    sys.stderr.write(f"{SCHEMA_DIR}: Dagster {written}\n")
