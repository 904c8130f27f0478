"""The alias ledger on the machine's PostgreSQL: same interface, append-only by trigger,
one alias operation at a time per model across processes, and picked by the settings."""

from __future__ import annotations

import threading

import psycopg2
import pytest

from lifecycle_assets.registry.ledger import (
    ABORTED,
    COMMITTED,
    AliasLockTimeout,
    Ledger,
    LedgerEntry,
    previous_holder,
)
from lifecycle_assets.registry.ledger_pg import PostgresLedger
from lifecycle_assets.settings import LifecycleSettings
from lifecycle_assets_tests.team_servers import postgres_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.team  # real PostgreSQL (and servers the tests start)


def _entry(alias: str, old: str | None, new: str | None) -> LedgerEntry:
    return LedgerEntry.new("m", alias, old, new, kind="move", reason="test", actor="pytest")


def test_entries_settle_and_name_holders_as_the_sqlite_ledger_does(postgres_url) -> None:  # noqa: F811
    ledger = PostgresLedger(postgres_url.replace("postgresql://", "postgresql+psycopg2://"))
    first = ledger.append(_entry("champion", None, "1"))
    ledger.settle(first.operation_id, COMMITTED)
    second = ledger.append(_entry("champion", "1", "2"))
    assert second.seq > first.seq
    assert [e.state for e in ledger.entries("m", "champion")] == ["COMMITTED", "PENDING"]
    settled = ledger.settle(second.operation_id, COMMITTED, "done")
    assert settled.note == "done" and settled.settled_at
    third = ledger.append(_entry("champion", "2", "3"))
    ledger.settle(third.operation_id, ABORTED)
    assert ledger.holders("m")["champion"].to_version == "2"
    assert previous_holder("m", ledger=ledger) == "1"
    assert ledger.entries("other") == []


def test_the_database_keeps_the_ledger_append_only(postgres_url) -> None:  # noqa: F811
    ledger = PostgresLedger(postgres_url)
    entry = ledger.append(_entry("champion", None, "1"))
    ledger.settle(entry.operation_id, COMMITTED)
    statements = [
        "DELETE FROM alias_ledger",
        "TRUNCATE alias_ledger",
        "UPDATE alias_ledger SET state = 'ABORTED'",
        "UPDATE alias_ledger SET to_version = '9'",
    ]
    for statement in statements:
        conn = psycopg2.connect(postgres_url)
        with pytest.raises(psycopg2.errors.RaiseException), conn.cursor() as cursor:
            cursor.execute(statement)
        conn.close()
    pending = ledger.append(_entry("champion", "1", "2"))
    conn = psycopg2.connect(postgres_url)
    with pytest.raises(psycopg2.errors.RaiseException), conn.cursor() as cursor:
        cursor.execute(  # settling may not rewrite what the entry says
            "UPDATE alias_ledger SET state = 'COMMITTED', to_version = '9' WHERE seq = %s",
            (pending.seq,),
        )
    conn.close()
    assert [e.to_version for e in ledger.entries("m")] == ["1", "2"]


def test_one_alias_operation_at_a_time_per_model(postgres_url) -> None:  # noqa: F811
    holder, waiter = PostgresLedger(postgres_url), PostgresLedger(postgres_url, lock_timeout=0.3)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.lock("m"):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(10)
    try:
        with pytest.raises(AliasLockTimeout, match="held its lock"), waiter.lock("m"):
            pass
        with waiter.lock("another model"):
            pass  # other models are not held up
    finally:
        release.set()
        thread.join(10)
    with waiter.lock("m"):
        pass  # released with the holder's transaction


def test_settings_pick_the_ledger(postgres_url, tmp_path) -> None:  # noqa: F811
    embedded = LifecycleSettings.from_env({"LIFECYCLE_HOME": str(tmp_path)})
    assert type(Ledger.for_settings(embedded)) is Ledger
    team = LifecycleSettings.from_env(
        {
            "LIFECYCLE_HOME": str(tmp_path),
            "LIFECYCLE_PROFILE": "team",
            "DATABASE_URL": postgres_url,
            "LIFECYCLE_STORAGE_URL": "s3://lifecycle-bucket/x",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        }
    )
    ledger = Ledger.for_settings(team)
    assert isinstance(ledger, PostgresLedger) and ledger.url == postgres_url
    assert "secret" not in repr(PostgresLedger("postgresql://u:secret@db:5432/x"))


def test_gate_verdicts_are_sealed_append_only_beside_the_ledger(postgres_url) -> None:  # noqa: F811
    """The verdict record (`registry/verdicts.py`) on the team's PostgreSQL: the newest record
    of a version is the one readers check, and no role can rewrite or remove one."""
    from lifecycle_assets.registry.verdicts import record_verdict, recorded_verdict

    ledger = PostgresLedger(postgres_url)
    assert recorded_verdict(ledger, "m", "1") is None
    failed = {"name": "auc_meets_minimum", "passed": False, "description": "AUC 0.61 < 0.7"}
    record_verdict(ledger, "m", "1", sha256="a" * 64, gates=[failed], file="f", dagster_run_id="r")
    newest = record_verdict(ledger, "m", "1", sha256="b" * 64, gates=[], file="f")
    found = recorded_verdict(ledger, "m", "1")
    assert found == newest and found.passed and found.seq > 1
    for statement in (
        "DELETE FROM gate_verdicts",
        "TRUNCATE gate_verdicts",
        "UPDATE gate_verdicts SET passed = true, sha256 = 'c'",
    ):
        conn = psycopg2.connect(postgres_url)
        with pytest.raises(psycopg2.errors.RaiseException), conn.cursor() as cursor:
            cursor.execute(statement)
        conn.close()
    assert recorded_verdict(ledger, "m", "1").sha256 == "b" * 64


def test_the_seal_is_checked_in_the_callers_postgres_ledger(postgres_url, tmp_path) -> None:  # noqa: F811
    """The evaluation's file is sealed in the team's PostgreSQL before it is written, and
    `check_seal` reads the record from the ledger its caller holds, not one it builds from the
    settings: the written file passes, an edited or missing one is TamperedVerdict, and a
    version with no record is read unchecked."""
    from lifecycle_assets.registry.gate_record import TamperedVerdict, check_seal
    from lifecycle_assets.registry.refs import ModelRef
    from lifecycle_assets.registry.verdicts import seal_then_write
    from lifecycle_assets.storage import sha256_bytes as sha256_hex

    def ref(version: str, **tags: str) -> ModelRef:
        return ModelRef("m", version, run_id="r", source="s", tags=tags)

    ledger = PostgresLedger(postgres_url)
    sealed = seal_then_write(ledger, "m", "1", {"gates": []}, tmp_path / "evaluation.json")
    assert (tmp_path / "evaluation.json").read_bytes() == sealed
    assert check_seal(ledger, ref("1"), sealed, "f") == ""
    for found, shown in ((b'{"gates": [1]}', sha256_hex(b'{"gates": [1]}')), (None, "no file")):
        with pytest.raises(TamperedVerdict, match=f"found {shown}"):
            check_seal(ledger, ref("1"), found, "f")
    assert "read unchecked" in check_seal(ledger, ref("2"), sealed, "f")
    # Registered to be sealed, no record: the record is lost, not "evaluated before seals".
    with pytest.raises(TamperedVerdict, match="the record is lost"):
        check_seal(ledger, ref("2", verdict_sealed="true"), sealed, "f")


def test_a_dropped_verdict_table_is_one_line_then_made_again(postgres_url) -> None:  # noqa: F811
    """A process made `gate_verdicts` once; dropped behind its back (by the table's owner: the
    triggers stop DELETE and TRUNCATE, not DROP), the next read is the ledger's one line, and
    the one after makes the table anew, so the next evaluation's seal is recorded again."""
    from lifecycle_assets.registry.ledger import LedgerUnusable
    from lifecycle_assets.registry.verdicts import record_verdict, recorded_verdict

    ledger = PostgresLedger(postgres_url)
    record_verdict(ledger, "m", "1", sha256="a" * 64, gates=[], file="f")
    conn = psycopg2.connect(postgres_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE gate_verdicts")
    conn.close()
    with pytest.raises(LedgerUnusable, match='relation "gate_verdicts" does not exist'):
        recorded_verdict(ledger, "m", "1")
    assert recorded_verdict(ledger, "m", "1") is None
    record_verdict(ledger, "m", "1", sha256="b" * 64, gates=[], file="f")
    assert recorded_verdict(ledger, "m", "1").sha256 == "b" * 64
