"""The alias ledger on PostgreSQL, for a team whose machines share no disk.

Same interface, same columns (`ledger_schema.COLUMNS`, the canary's `weight` included: an older
table is given it when its schema is checked) and same PENDING -> COMMITTED/ABORTED life of an
entry as the SQLite ledger, but
everything a single file gave for free is asked of the database: a trigger refuses deletes,
truncation and any update other than settling a PENDING row, so the table stays append-only
whoever connects; one alias operation at a time per model is a transaction-scoped advisory lock
(`pg_advisory_xact_lock`), which PostgreSQL drops when the holder's connection dies, as the OS
drops a `flock` of a killed process.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from lifecycle_assets import config
from lifecycle_assets.registry.ledger import (
    ABORTED,
    COMMITTED,
    PENDING,
    AliasLockTimeout,
    Ledger,
    LedgerEntry,
    entry_from_row,
    unusable,
    utc_now,
)
from lifecycle_assets.registry.ledger_schema import COLUMNS, WEIGHT_COLUMN, PgTable, create_table

_IMMUTABLE = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in ("seq", *COLUMNS))
# (database, table) pairs whose schema this process already created or checked.
_SCHEMA_READY: set[tuple[str, str]] = set()
_APPEND_ONLY = f"""
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'the alias ledger is append-only';
    END IF;
    IF OLD.state <> '{PENDING}' OR NEW.state = '{PENDING}' OR {_IMMUTABLE} THEN
        RAISE EXCEPTION 'only a PENDING ledger entry can change, and only to settle';
    END IF;
    RETURN NEW;
END """
# Whether the schema below is in place as written (the trigger function's text included), so
# that a role granted the table but not CREATE on its schema, or ownership of the function,
# uses a ledger its owner made instead of failing on DDL it need not run.
_SCHEMA_IN_PLACE = """
SELECT to_regclass('alias_ledger_by_model') IS NOT NULL
   AND (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('alias_ledger')
        AND tgname IN ('alias_ledger_append_only', 'alias_ledger_no_truncate')) = 2
   AND EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'alias_ledger_append_only' AND prosrc = %s)
   AS in_place
"""
_SCHEMA = f"""
{create_table("BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION")}
-- A table made before weights were recorded gets the column (its old rows keep NULL); the
-- function below, rewritten with it, then guards it too.
ALTER TABLE alias_ledger ADD COLUMN IF NOT EXISTS {WEIGHT_COLUMN.format(real="DOUBLE PRECISION")};
CREATE INDEX IF NOT EXISTS alias_ledger_by_model ON alias_ledger (model, alias, seq);
CREATE OR REPLACE FUNCTION alias_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $${_APPEND_ONLY}$$;
CREATE OR REPLACE TRIGGER alias_ledger_append_only BEFORE UPDATE OR DELETE ON alias_ledger
FOR EACH ROW EXECUTE FUNCTION alias_ledger_append_only();
CREATE OR REPLACE TRIGGER alias_ledger_no_truncate BEFORE TRUNCATE ON alias_ledger
FOR EACH STATEMENT EXECUTE FUNCTION alias_ledger_append_only();
"""
_LEDGER_TABLE = PgTable(
    name="alias_ledger",
    in_place=_SCHEMA_IN_PLACE,
    in_place_args=(_APPEND_ONLY,),
    lock_key=0x4C45444745,  # "LEDGE"
    ddl=_SCHEMA,
)


def _make(cursor: Any, table: PgTable) -> None:
    """The table's schema, unless it is in place as written."""
    cursor.execute(table.in_place, table.in_place_args)
    if not cursor.fetchone()["in_place"]:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (table.lock_key,))
        cursor.execute(table.ddl)


def psycopg2_dsn(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (`postgresql+psycopg2://` -> `postgresql://`)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


class PostgresLedger(Ledger):
    """The ledger table in the team's PostgreSQL; a connection per call, as the SQLite one."""

    def __init__(self, url: str, lock_timeout: float = config.ALIAS_LOCK_TIMEOUT_SECONDS):
        self.url = psycopg2_dsn(url)
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"PostgresLedger({self.url.rsplit('@', 1)[-1]})"  # never the password

    @property
    def where(self) -> str:
        """The URL without password or query (`postgresql://user@host:5432/db`): enough to
        know which database and role failed, nothing secret."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.netloc.rsplit("@", 1)[-1]
        user = f"{parts.username}@" if parts.username else ""
        return urllib.parse.urlunsplit((parts.scheme, user + host, parts.path, "", ""))

    def _connection(self) -> Any:
        try:
            return psycopg2.connect(self.url, connect_timeout=10)
        except psycopg2.Error as error:  # unreachable, no such database, refused login
            raise unusable(self.where, error) from error

    @contextlib.contextmanager
    def transaction(self, *tables: PgTable) -> Iterator[Any]:
        """One transaction on a fresh connection: committed on success, rolled back on error.

        The ledger's table, and `tables` kept beside it (the gate verdicts), are made first,
        once per process and database. Any database error inside (a missing table or grant, a
        server gone) ends as `LedgerUnusable`, as the SQLite ledger's do, and their schema is
        checked again next time: a table dropped under a long-running process is made anew,
        as a new process would.
        """
        used = [(self.url, table.name) for table in (_LEDGER_TABLE, *tables)]
        conn = self._connection()
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
                for table in (_LEDGER_TABLE, *tables):
                    if (self.url, table.name) not in _SCHEMA_READY:
                        _make(cursor, table)
                yield cursor
            _SCHEMA_READY.update(used)
        except psycopg2.Error as error:
            _SCHEMA_READY.difference_update(used)
            raise unusable(self.where, error) from error
        finally:
            conn.close()

    def append(self, entry: LedgerEntry) -> LedgerEntry:
        """Write one entry durably (committed before this returns); returns it with its seq."""
        values = [getattr(entry, c) for c in COLUMNS]
        columns = ", ".join((*COLUMNS, "state", "settled_at", "note"))
        with self.transaction() as cursor:
            cursor.execute(
                f"INSERT INTO alias_ledger ({columns}) "
                f"VALUES ({', '.join(['%s'] * (len(COLUMNS) + 3))}) RETURNING seq",
                [*values, entry.state, entry.settled_at, entry.note],
            )
            seq = cursor.fetchone()["seq"]
        return replace(entry, seq=seq)

    def settle(self, operation_id: str, state: str, note: str = "") -> LedgerEntry:
        """Move a PENDING entry to COMMITTED or ABORTED (the only update the trigger allows)."""
        if state not in (COMMITTED, ABORTED):
            raise ValueError(f"a ledger entry settles as {COMMITTED} or {ABORTED}, not {state}")
        with self.transaction() as cursor:
            cursor.execute(
                "UPDATE alias_ledger SET state = %s, settled_at = %s, note = %s "
                "WHERE operation_id = %s AND state = %s",
                (state, utc_now(), note, operation_id, PENDING),
            )
            cursor.execute("SELECT * FROM alias_ledger WHERE operation_id = %s", (operation_id,))
            row = cursor.fetchone()
        return entry_from_row(row, self.where)

    def entries(
        self, model: str, alias: str | None = None, state: str | None = None
    ) -> list[LedgerEntry]:
        """The model's entries, oldest first, optionally for one alias or one state."""
        query, args = "SELECT * FROM alias_ledger WHERE model = %s", [model]
        if alias is not None:
            query, args = query + " AND alias = %s", [*args, alias]
        if state is not None:
            query, args = query + " AND state = %s", [*args, state]
        with self.transaction() as cursor:
            cursor.execute(query + " ORDER BY seq", args)
            return [entry_from_row(row, self.where) for row in cursor.fetchall()]

    @contextlib.contextmanager
    def lock(self, model: str) -> Iterator[None]:
        """Exclusive across machines for one model, for as long as the block runs.

        The lock belongs to a transaction held open on its own connection; ending it (or the
        holder's death closing the connection) releases the lock.
        """
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = %s", (f"{int(self.lock_timeout * 1000)}",))
                try:
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        (f"alias_ledger:{model}",),
                    )
                except psycopg2.errors.LockNotAvailable:
                    raise AliasLockTimeout(
                        f"another alias operation on {model} held its lock for more than "
                        f"{self.lock_timeout:.0f} s ({self!r})"
                    ) from None
                except psycopg2.Error as error:
                    raise unusable(self.where, error) from error
            yield
        finally:
            conn.rollback()
            conn.close()
