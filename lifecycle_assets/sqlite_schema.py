"""A new SQLite database made in one transaction from known statements, only if it is empty.

Used where a library would build a new database through SQLAlchemy and alembic (MLflow's store,
Dagster's run databases) while its final content is known: executing that content is the same
file in milliseconds. The emptiness check and the statements share one write transaction, so a
process racing to create the same file either finds it complete or leaves it to the other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

# How long to wait for another writer of the same new file (SQLite's busy timeout).
BUSY_SECONDS = 30.0


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
