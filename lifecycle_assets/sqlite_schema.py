"""A new SQLite database made in one transaction from known statements, only if it is empty.

Used where a library would build a new database through SQLAlchemy and alembic (MLflow's store,
Dagster's instance and run databases) while its final content is known: executing that content
is the same file in milliseconds. The emptiness check and the statements share one write
transaction, so a process racing to create the same file either finds it complete or leaves it
to the other. `dump` writes such content from a database the library created (the committed
schema files), `statements` reads it back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

# How long to wait for another writer of the same new file (SQLite's busy timeout).
BUSY_SECONDS = 30.0
_KINDS = {"table": 0, "index": 1, "view": 2, "trigger": 3}


def create_if_empty(
    path: Path,
    statements: Iterable[tuple[str, Sequence[Any]]],
    *,
    journal_mode: str | None = None,
) -> bool:
    """Execute `statements` (SQL and parameters) on `path` in one transaction if it holds no
    table or index yet; False, writing nothing, when it does."""
    with closing(sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)) as db:
        if journal_mode is not None:
            db.execute(f"PRAGMA journal_mode={journal_mode}")  # outside any transaction
        db.execute("BEGIN IMMEDIATE")  # no other writer between the check and the statements
        try:
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                db.execute("ROLLBACK")
                return False
            for sql, parameters in statements:
                db.execute(sql, parameters)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return True


def statements(text: str, source: str = "the schema") -> list[str]:
    """A schema file's SQL statements, one each (a trigger's body holds semicolons of its own);
    `--` comment lines between statements are left out."""
    found, pending = [], ""
    for line in text.splitlines(keepends=True):
        if not pending and (line.startswith("--") or not line.strip()):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"{source} ends inside a statement: {pending[:60]!r}")
    return found


def literal(value: object) -> str:
    """`value` as an SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def is_new(path: Path) -> bool:
    """No database at `path` yet: no file, or an empty one (SQLite made it, wrote nothing)."""
    return not path.exists() or path.stat().st_size == 0


def insert(table: str, row: tuple[Any, ...]) -> str | None:
    """A row as its INSERT statement (`dump`'s default for every row)."""
    return f'INSERT INTO "{table}" VALUES ({", ".join(literal(value) for value in row)});'


def dump(
    path: Path,
    header: list[str],
    rows: Callable[[str, tuple[Any, ...]], str | None] = insert,
) -> str:
    """A schema file's text for the database at `path`: the `header` comment lines, its objects
    by kind and name (libraries create indexes in no fixed order), then the rows of every table
    that has any, each the statement `rows(table, row)` writes (None leaves the row out)."""
    with closing(sqlite3.connect(path)) as db:
        objects = db.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ).fetchall()
        lines = [f"-- {line}" for line in header]
        for _, _, sql in sorted(objects, key=lambda o: (_KINDS[o[0]], o[1])):
            lines.append(f"{sql};")
        for table in sorted(name for kind, name, _ in objects if kind == "table"):
            for row in db.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall():
                if (statement := rows(table, row)) is not None:
                    lines.append(statement)
    return "\n".join(lines) + "\n"
