"""The alias ledger: an append-only record of every alias change, kept next to the registry.

MLflow keeps only the current holder of an alias, so "what served at time T" and "where does a
rollback go" need a history of their own. Each change is one SQLite row written PENDING before
the registry is touched and settled (COMMITTED or ABORTED) afterwards; triggers refuse deletes
and any update other than settling a PENDING row, so the file stays append-only. WAL mode makes
each append atomic and lets several processes read and write the same file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import socket
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.ledger_schema import (
    ABORTED,
    COLUMNS,
    COMMITTED,
    PENDING,
    create_or_migrate,
)

# What an entry did: `external` records a change made behind the ledger's back, found by
# reconcile, so that the ledger still matches the registry afterwards. `retire` records a version
# leaving service for good; its `alias` is RETIRE_ALIAS, which no registry alias may be named.
# `weight` records a new traffic weight of the canary that stays the same version.
KINDS = ("move", "remove", "rollback", "external", "retire", "weight")
RETIRE_ALIAS = "(retired)"


class AliasError(Exception):
    """An alias operation that cannot be done; the message is meant for the user as is."""


class LedgerUnusable(AliasError):
    """The ledger file cannot be opened or read (corrupt, replaced, unreadable, locked past
    the busy timeout): the message names the file, so the operator knows what to restore."""


def unusable(where: str, why: object) -> LedgerUnusable:
    """The one message of a ledger that cannot be used, SQLite file or PostgreSQL table alike:
    `the alias ledger <where> cannot be used: <why>`, on one line (a driver's message may run
    on with context lines that a person cannot act on)."""
    first = (str(why).strip().splitlines() or [type(why).__name__])[0]
    return LedgerUnusable(f"the alias ledger {where} cannot be used: {first}")


class AliasLockTimeout(AliasError):
    """Another process held the model's alias lock for longer than the timeout."""


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def version_label(version: str | None) -> str:
    """`v3`, or `unset` for an alias that points nowhere: how messages name a holder."""
    return "unset" if version is None else f"v{version}"


def default_actor() -> str:
    """`user@host`: who is behind a change made from a shell."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class LedgerEntry:
    """One alias change: from_version None means the alias was unset, to_version None removes it.
    `weight` is the canary's traffic share the change set (canary entries only; None before
    weights were recorded)."""

    operation_id: str
    time: str
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    kind: str
    reason: str
    actor: str
    dagster_run_id: str = ""
    state: str = PENDING
    settled_at: str | None = None
    note: str = ""
    seq: int = 0
    weight: float | None = None

    @classmethod
    def new(
        cls,
        model: str,
        alias: str,
        from_version: str | None,
        to_version: str | None,
        *,
        kind: str,
        reason: str,
        actor: str,
        dagster_run_id: str = "",
        weight: float | None = None,
    ) -> LedgerEntry:
        if kind not in KINDS:
            raise ValueError(f"unknown ledger entry kind {kind!r}")
        return cls(
            uuid.uuid4().hex, utc_now(), model, alias, from_version, to_version,
            kind, reason, actor, dagster_run_id, weight=weight,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """The ledger file and the per-model lock files beside it.

    A connection is opened per call: cheap for SQLite, and safe across forks and threads.
    """

    def __init__(self, path: Path, lock_timeout: float = config.ALIAS_LOCK_TIMEOUT_SECONDS):
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    @classmethod
    def for_settings(cls, settings: Settings) -> Ledger:
        """The team's PostgreSQL ledger in team mode, else the SQLite file under the home."""
        if settings.team and settings.database_url:
            from lifecycle_assets.registry.ledger_pg import PostgresLedger

            return PostgresLedger(settings.database_url)
        return Ledger(settings.home / config.LEDGER_DIR / config.LEDGER_FILE)

    @classmethod
    def default(cls) -> Ledger:
        """The ledger of the environment's LIFECYCLE_HOME."""
        return cls.for_settings(Settings.from_env())

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the ledger's database, also for tables kept beside the ledger
        (`verdicts.py`): any database error ends as the ledger's one `LedgerUnusable` line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as error:
            raise self._unusable(error) from error
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a COMMITTED row survives a power cut, not only a killed process.
            conn.execute("PRAGMA synchronous=FULL")
            create_or_migrate(conn)
            yield conn
        except sqlite3.DatabaseError as error:
            # Not "the registry could not be used": the registry may be fine, and a person
            # must know which file to restore (the registry's aliases are the source of truth).
            raise self._unusable(error) from error
        finally:
            conn.close()

    @property
    def where(self) -> str:
        """How error messages name this ledger: the file a person would restore."""
        return str(self.path)

    def _unusable(self, error: sqlite3.Error) -> LedgerUnusable:
        return unusable(self.where, error)

    def append(self, entry: LedgerEntry) -> LedgerEntry:
        """Write one entry durably; returns it with its sequence number."""
        values = [getattr(entry, c) for c in COLUMNS]
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                f"INSERT INTO alias_ledger ({', '.join(COLUMNS)}, state, settled_at, note) "
                f"VALUES ({', '.join('?' * len(COLUMNS))}, ?, ?, ?)",
                [*values, entry.state, entry.settled_at, entry.note],
            )
            conn.execute("COMMIT")
        return replace(entry, seq=cursor.lastrowid or 0)

    def settle(self, operation_id: str, state: str, note: str = "") -> LedgerEntry:
        """Move a PENDING entry to COMMITTED or ABORTED (the only update the schema allows)."""
        if state not in (COMMITTED, ABORTED):
            raise ValueError(f"a ledger entry settles as {COMMITTED} or {ABORTED}, not {state}")
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE alias_ledger SET state = ?, settled_at = ?, note = ? "
                "WHERE operation_id = ? AND state = ?",
                (state, utc_now(), note, operation_id, PENDING),
            )
            row = conn.execute(
                "SELECT * FROM alias_ledger WHERE operation_id = ?", (operation_id,)
            ).fetchone()
            conn.execute("COMMIT")
        return entry_from_row(dict(row), self.where)

    def entries(
        self, model: str, alias: str | None = None, state: str | None = None
    ) -> list[LedgerEntry]:
        """The model's entries, oldest first, optionally for one alias or one state."""
        query, args = "SELECT * FROM alias_ledger WHERE model = ?", [model]
        if alias is not None:
            query, args = query + " AND alias = ?", [*args, alias]
        if state is not None:
            query, args = query + " AND state = ?", [*args, state]
        with self.connect() as conn:
            rows = conn.execute(query + " ORDER BY seq", args)
            return [entry_from_row(dict(row), self.where) for row in rows]

    def holders(self, model: str) -> dict[str, LedgerEntry]:
        """Per alias, the last committed entry: what the ledger says the alias points to."""
        entries = self.entries(model, state=COMMITTED)
        return {e.alias: e for e in entries if e.kind != "retire"}

    def _lock_path(self, model: str) -> Path:
        safe = urllib.parse.quote(model, safe="")
        return self.path.parent / config.LEDGER_LOCK_DIR / f"{safe}.lock"

    @contextlib.contextmanager
    def lock(self, model: str) -> Iterator[None]:
        """Exclusive across processes for one model; the OS drops it if the holder dies."""
        path = self._lock_path(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        with path.open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise AliasLockTimeout(
                            f"another alias operation on {model} held its lock for more than "
                            f"{self.lock_timeout:.0f} s ({path})"
                        ) from None
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


_FIELDS = {f.name for f in fields(LedgerEntry)}
_MAY_BE_NULL = {"from_version", "to_version", "settled_at", "weight"}
_TYPES = {"seq": int, "weight": float}


# What a column or kind this version does not know may also be: a ledger a newer version wrote
# (a downgrade), which this one must not read as if it knew it.
_NEWER = " (or a newer lifecycle-assets wrote it: this version cannot read it; upgrade)"


def _row_problem(row: Mapping[str, Any]) -> str | None:
    """What makes a stored row no ledger entry (columns, types, kind, state, time); None if it
    is one. A row written behind the ledger's back must not crash a reader further on."""
    if unknown := sorted(set(row) - _FIELDS):
        return f"unknown column(s) {', '.join(unknown)}{_NEWER}"
    if missing := sorted(_FIELDS - set(row)):
        return f"missing column(s) {', '.join(missing)}"
    for name, value in row.items():
        expected = _TYPES.get(name, str)
        if not isinstance(value, expected) and not (value is None and name in _MAY_BE_NULL):
            return f"{name} {value!r} is not {expected.__name__}"
    if row["weight"] is not None and not 0.0 <= row["weight"] <= 1.0:
        return f"weight {row['weight']!r} is not in [0, 1]"
    if row["kind"] not in KINDS:
        return f"kind {row['kind']!r} is not one of {', '.join(KINDS)}{_NEWER}"
    if row["state"] not in (PENDING, COMMITTED, ABORTED):
        return f"state {row['state']!r} is not one of {PENDING}, {COMMITTED}, {ABORTED}"
    for name in ("time", "settled_at"):
        try:
            if row[name] is not None:
                dt.datetime.fromisoformat(row[name])
        except ValueError:
            return f"{name} {row[name]!r} is not an ISO 8601 time"
    return None


def entry_from_row(row: Mapping[str, Any], where: str) -> LedgerEntry:
    """The entry a stored row holds, or `LedgerUnusable` naming the row and what is wrong."""
    if (problem := _row_problem(row)) is not None:
        raise unusable(where, f"entry {row.get('seq', '?')} is corrupt: {problem}")
    return LedgerEntry(**row)


def history(
    name: str, alias: str | None = None, *, ledger: Ledger | None = None
) -> list[LedgerEntry]:
    """Every recorded change of the model's aliases (or one alias), oldest first."""
    return (ledger or Ledger.default()).entries(name, alias)


def previous_holder(
    name: str,
    alias: str = config.CHAMPION_ALIAS,
    *,
    usable: Callable[[str], bool] | None = None,
    ledger: Ledger | None = None,
) -> str | None:
    """The version a rollback of `alias` returns to, or None when there is none.

    Walks committed entries newest first and takes the first from-version that is not the
    current holder, was not itself rolled back from, and passes `usable(version)` (the caller's
    check that the version still exists and is not retired). Skipping versions that a rollback
    left means a second rollback goes further back instead of returning to the bad version.
    """
    entries = (ledger or Ledger.default()).entries(name, alias, COMMITTED)
    if not entries:
        return None
    current = entries[-1].to_version
    rolled_back_from: set[str] = set()
    for entry in reversed(entries):
        if entry.kind == "rollback" and entry.from_version is not None:
            rolled_back_from.add(entry.from_version)
        candidate = entry.from_version
        if candidate is None or candidate == current or candidate in rolled_back_from:
            continue
        if usable is None or usable(candidate):
            return candidate
    return None
