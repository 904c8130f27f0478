"""The PostgreSQL ledger records a canary's weight as the SQLite one does, and migrates.

A team's ledger table made before weights were recorded gets the `weight` column the first
time a process of this version checks its schema (its older rows keep NULL), and the trigger
that keeps the table append-only guards the new column too. Real PostgreSQL on 127.0.0.1.
"""

from __future__ import annotations

import psycopg2
import pytest

from lifecycle_assets.registry.ledger import COMMITTED, LedgerEntry
from lifecycle_assets.registry.ledger_pg import PostgresLedger
from lifecycle_assets.registry.promotions import promoted_weight
from lifecycle_assets_tests.team_servers import postgres_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.team  # real PostgreSQL

# The table as `ledger_pg` created it before weights were recorded (main 1399ede), one row in.
OLD_TABLE = """
CREATE TABLE alias_ledger (
    seq BIGSERIAL PRIMARY KEY, operation_id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
    model TEXT NOT NULL, alias TEXT NOT NULL, from_version TEXT, to_version TEXT,
    kind TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL, dagster_run_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('PENDING', 'COMMITTED', 'ABORTED')),
    settled_at TEXT, note TEXT NOT NULL DEFAULT ''
);
INSERT INTO alias_ledger (operation_id, time, model, alias, from_version, to_version, kind,
    reason, actor, dagster_run_id, state, settled_at)
VALUES ('op1', '2026-01-01T00:00:00.000+00:00', 'm', 'canary', NULL, '2', 'move',
    'canary weight 0.1: old', 'me', '', 'COMMITTED', '2026-01-01T00:00:00.001+00:00');
"""


def _weigh(ledger: PostgresLedger, old: str | None, new: str, weight: float, kind: str) -> None:
    entry = LedgerEntry.new(
        "m", "canary", old, new, kind=kind, reason="r", actor="a", weight=weight
    )
    ledger.settle(ledger.append(entry).operation_id, COMMITTED)


def test_weight_entries_round_trip_and_the_column_is_guarded(postgres_url) -> None:  # noqa: F811
    ledger = PostgresLedger(postgres_url)
    _weigh(ledger, None, "2", 0.1, "move")
    _weigh(ledger, "2", "2", 0.4, "weight")
    assert [(e.kind, e.weight) for e in ledger.entries("m", "canary")] == [
        ("move", 0.1),
        ("weight", 0.4),
    ]
    assert promoted_weight(ledger, "m", "2") == 0.4
    assert promoted_weight(ledger, "m", "3") is None
    for statement in ("UPDATE alias_ledger SET weight = 1.0", "DELETE FROM alias_ledger"):
        conn = psycopg2.connect(postgres_url)
        with pytest.raises(psycopg2.errors.RaiseException), conn.cursor() as cursor:
            cursor.execute(statement)
        conn.close()


def test_a_table_made_before_weights_is_migrated(postgres_url) -> None:  # noqa: F811
    conn = psycopg2.connect(postgres_url)
    with conn, conn.cursor() as cursor:
        cursor.execute(OLD_TABLE)
    conn.close()
    ledger = PostgresLedger(postgres_url)
    (old,) = ledger.entries("m")
    assert (old.to_version, old.weight) == ("2", None)
    assert promoted_weight(ledger, "m", "2") is None  # no weight recorded: no traffic
    _weigh(ledger, "2", "2", 0.25, "weight")
    assert [e.weight for e in ledger.entries("m")] == [None, 0.25]
    conn = psycopg2.connect(postgres_url)
    with pytest.raises(psycopg2.errors.RaiseException), conn.cursor() as cursor:
        cursor.execute("UPDATE alias_ledger SET weight = 1.0 WHERE weight IS NULL")
    conn.close()
