"""The SQLite ledger's table, its append-only triggers, and the migration of older files.

The columns are shared with the PostgreSQL ledger (`ledger_pg.py`), so both keep the same
shape. `weight` (a canary's traffic share, REAL in [0, 1]; NULL for any other entry) was added
after the first ledgers were written: a file without it gets the column and a trigger that
guards it too, in one transaction, the first time a process of this version opens it. Its
older entries keep a NULL weight: no weight was recorded for them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

# An entry's life: written PENDING before the registry is touched, then settled.
PENDING = "PENDING"
COMMITTED = "COMMITTED"
ABORTED = "ABORTED"
COLUMNS = (
    "operation_id", "time", "model", "alias", "from_version", "to_version",
    "kind", "reason", "actor", "dagster_run_id", "weight",
)  # fmt: skip
# The column the migration adds, with its type and constraint (the same on PostgreSQL).
WEIGHT_COLUMN = "weight {real} CHECK (weight IS NULL OR (weight >= 0 AND weight <= 1))"
_IMMUTABLE = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in ("seq", *COLUMNS))
_SETTLE_ONLY = f"""
CREATE TRIGGER IF NOT EXISTS alias_ledger_settle_only BEFORE UPDATE ON alias_ledger
WHEN OLD.state != '{PENDING}' OR NEW.state = '{PENDING}' OR {_IMMUTABLE}
BEGIN SELECT RAISE(ABORT, 'only a PENDING ledger entry can change, and only to settle'); END;
"""


def create_table(key: str, real: str) -> str:
    """`CREATE TABLE IF NOT EXISTS alias_ledger`, the one shape of both ledgers, in a
    database's words for an auto-numbered primary key (`key`) and a float (`real`)."""
    return f"""
CREATE TABLE IF NOT EXISTS alias_ledger (
    seq {key},
    operation_id TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL,
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    from_version TEXT,
    to_version TEXT,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    dagster_run_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('{PENDING}', '{COMMITTED}', '{ABORTED}')),
    settled_at TEXT,
    note TEXT NOT NULL DEFAULT '',
    {WEIGHT_COLUMN.format(real=real)}
);
"""


SCHEMA = (
    create_table("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL")
    + f"""
CREATE INDEX IF NOT EXISTS alias_ledger_by_model ON alias_ledger (model, alias, seq);
CREATE TRIGGER IF NOT EXISTS alias_ledger_no_delete BEFORE DELETE ON alias_ledger
BEGIN SELECT RAISE(ABORT, 'the alias ledger is append-only'); END;
{_SETTLE_ONLY}
"""
)


@dataclass(frozen=True)
class PgTable:
    """A table kept in the PostgreSQL ledger's database, made by `PostgresLedger.transaction`
    the first time a process uses it (and again after a database error); here, free of
    psycopg2, so its module (`verdicts.py`) need not load the driver to name it."""

    name: str
    # One row whose `in_place` says the schema is there as written: then no DDL runs, so a
    # role granted the table but not CREATE on its schema uses what its owner made.
    in_place: str
    in_place_args: tuple[str, ...]
    # A `pg_advisory_xact_lock` key: two first connections at once would both run the DDL.
    lock_key: int
    ddl: str


def _has_weight(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "weight" for row in conn.execute("PRAGMA table_info(alias_ledger)"))


def create_or_migrate(conn: sqlite3.Connection) -> None:
    """The table as this version writes it: created, or an older one given its `weight`
    column and a settle-only trigger that covers it (the old trigger would let a settle
    rewrite the weight). Under BEGIN IMMEDIATE, so two processes migrate it once."""
    conn.executescript(SCHEMA)
    if _has_weight(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _has_weight(conn):
            conn.execute(f"ALTER TABLE alias_ledger ADD COLUMN {WEIGHT_COLUMN.format(real='REAL')}")
            conn.execute("DROP TRIGGER IF EXISTS alias_ledger_settle_only")
            conn.execute(_SETTLE_ONLY)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
