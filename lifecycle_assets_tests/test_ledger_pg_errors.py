"""A damaged PostgreSQL ledger fails as a damaged SQLite one does: `LedgerUnusable`, one line
"the alias ledger <where> cannot be used: <why>" (no password in it), and `lifecycle history`
exits 1 with that line, never a psycopg2 traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from lifecycle_assets.registry.ledger import COMMITTED, LedgerEntry, LedgerUnusable
from lifecycle_assets.registry.ledger_pg import PostgresLedger
from lifecycle_assets_tests.team_servers import postgres_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.team  # real PostgreSQL

SHAPE = r"^the alias ledger postgresql://\S+ cannot be used: \S"


def _admin(url: str, statement: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(statement)
    conn.close()


def _with_rows(url: str) -> PostgresLedger:
    ledger = PostgresLedger(url)
    entry = ledger.append(LedgerEntry.new("m", "champion", None, "1", kind="move", reason="t",
                                          actor="pytest"))  # fmt: skip
    ledger.settle(entry.operation_id, COMMITTED)
    return ledger


def _insert(url: str, **changed: str) -> None:
    row = {
        "operation_id": uuid.uuid4().hex, "time": "2026-01-01T00:00:00.000+00:00", "model": "m",
        "alias": "champion", "from_version": "1", "to_version": "2", "kind": "move",
        "reason": "t", "actor": "pytest", "dagster_run_id": "", "state": COMMITTED, **changed,
    }  # fmt: skip
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO alias_ledger ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
            list(row.values()),
        )
    conn.close()


@pytest.fixture
def role(postgres_url: str) -> Iterator[str]:  # noqa: F811
    """A login role of its own with CONNECT on the test's database and nothing else."""
    name = f"ledger_reader_{uuid.uuid4().hex[:8]}"
    database = postgres_url.rsplit("/", 1)[1]
    _admin(postgres_url, f"CREATE ROLE \"{name}\" LOGIN PASSWORD 'hush-secret'")
    _admin(postgres_url, f'GRANT CONNECT ON DATABASE "{database}" TO "{name}"')
    try:
        yield name
    finally:
        _admin(postgres_url, f'DROP OWNED BY "{name}"')
        _admin(postgres_url, f'DROP ROLE "{name}"')


def _port_closed(url: str, _role: str) -> str:
    host = url.split("@", 1)[1].split("/", 1)[0]
    return url.replace(host, "127.0.0.1:1")


def _no_database(url: str, _role: str) -> str:
    return url.rsplit("/", 1)[0] + "/no_such_ledger_database"


def _no_grant(url: str, role: str) -> str:
    """A role that may connect but not create or read the table (PostgreSQL 15: no CREATE on
    `public` for others); the table exists, made by its owner."""
    _with_rows(url)
    return url.replace("://postgres@", f"://{role}:hush-secret@")


def _corrupt_time(url: str, _role: str) -> str:
    _with_rows(url)
    _insert(url, time="yesterday")
    return url


def _unknown_kind(url: str, _role: str) -> str:
    _with_rows(url)
    _insert(url, kind="teleport")
    return url


def _foreign_column(url: str, _role: str) -> str:
    _with_rows(url)
    _admin(url, "ALTER TABLE alias_ledger ADD COLUMN shard INTEGER DEFAULT 7")
    return url


DAMAGES: dict[str, tuple[Callable[[str, str], str], str]] = {
    "port closed": (_port_closed, "Connection refused"),
    "no database": (_no_database, 'database "no_such_ledger_database" does not exist'),
    "no grant": (_no_grant, "permission denied"),
    "corrupt time": (_corrupt_time, "entry 2 is corrupt: time 'yesterday' is not"),
    "unknown kind": (_unknown_kind, "entry 2 is corrupt: kind 'teleport' is not one of"),
    "foreign column": (
        _foreign_column,
        "entry 1 is corrupt: unknown column(s) shard (or a newer lifecycle-assets wrote it",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_ledger_is_one_line_naming_it(
    damage: str,
    postgres_url: str,  # noqa: F811
    role: str,
    tmp_path: Path,
) -> None:
    make, why = DAMAGES[damage]
    url = make(postgres_url, role)
    with pytest.raises(LedgerUnusable) as raised:
        PostgresLedger(url).entries("m")
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and why in message, message
    assert "hush-secret" not in message
    assert re.match(SHAPE, message), message  # the SQLite ledger's shape (test_ledger.py)

    env = {
        **os.environ,
        "LIFECYCLE_HOME": str(tmp_path),
        "LIFECYCLE_PROFILE": "team",
        "DATABASE_URL": url,
        "LIFECYCLE_STORAGE_URL": "s3://unused-bucket/x",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
    }
    lifecycle = str(Path(sys.executable).parent / "lifecycle")
    result = subprocess.run(
        [lifecycle, "history", "m"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"Error: {message}", result.stderr


def test_a_table_dropped_under_a_running_process_is_one_line_then_made_again(
    postgres_url: str,  # noqa: F811
) -> None:
    """A long-running process (the service, the daemon) made the table once; dropped behind
    its back, the next call says so, and the one after starts an empty ledger as a new
    process would (reconcile then records what the registry holds)."""
    ledger = _with_rows(postgres_url)
    _admin(postgres_url, "ALTER TABLE alias_ledger RENAME TO alias_ledger_old")
    with pytest.raises(LedgerUnusable, match='relation "alias_ledger" does not exist'):
        ledger.entries("m")
    assert ledger.entries("m") == []


def test_an_unreachable_ledger_lock_is_one_line(postgres_url: str) -> None:  # noqa: F811
    ledger = PostgresLedger(_port_closed(postgres_url, ""))
    with pytest.raises(LedgerUnusable, match="Connection refused"), ledger.lock("m"):
        pass


def test_a_role_granted_the_table_uses_the_ledger_its_owner_made(
    postgres_url: str,  # noqa: F811
    role: str,
) -> None:
    """The usual team set-up: the owner made the table, the service's role is granted rows on
    it but no CREATE on the schema. It used to fail on DDL it need not run ("permission denied
    for schema public"); it appends, settles and reads, and the trigger still binds it."""
    _with_rows(postgres_url)
    _admin(postgres_url, f'GRANT SELECT, INSERT, UPDATE, DELETE ON alias_ledger TO "{role}"')
    _admin(postgres_url, f'GRANT USAGE ON SEQUENCE alias_ledger_seq_seq TO "{role}"')
    url = postgres_url.replace("://postgres@", f"://{role}:hush-secret@")
    ledger = PostgresLedger(url)
    entry = ledger.append(LedgerEntry.new("m", "champion", "1", "2", kind="move", reason="t",
                                          actor="pytest"))  # fmt: skip
    ledger.settle(entry.operation_id, COMMITTED)
    assert [e.to_version for e in ledger.entries("m")] == ["1", "2"]
    conn = psycopg2.connect(url)
    with pytest.raises(psycopg2.errors.RaiseException), conn.cursor() as cursor:
        cursor.execute("DELETE FROM alias_ledger")
    conn.close()
