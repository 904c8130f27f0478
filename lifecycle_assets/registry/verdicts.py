"""Gate verdicts sealed in the platform's own append-only record, beside the alias ledger.

A version's gate verdicts live in its `evaluation.json`, in the artifact store (a folder on
disk, or S3), where anyone who can write there could turn a failed gate into a passed one, and
MLflow tags are editable by anyone with registry access. So when the evaluation asset writes
the file it also appends here the verdict and the SHA-256 of the file's bytes, in the ledger's
database (the SQLite file, or the team's PostgreSQL): a table that triggers keep append-only, as
they keep the alias ledger. Readers of the verdicts (`gate_record.py`) check the file against
the newest record of its version; a version evaluated again gets a newer record.

The record is written before the file (`seal_then_write`): a process killed between the two
leaves a record with no file (or with the file of an earlier evaluation), which every reader
refuses as not matching, never a file with no record, which readers would take for a version
evaluated before verdicts were recorded and read unchecked. The next evaluation of the version
(`trained_model` re-evaluates a version whose seal its file does not match) appends a newer
record and writes the file that matches it.

The table is reached through the ledger's own connection (`Ledger.connect`,
`PostgresLedger.transaction`), so a database that cannot be used is the ledger's one
`LedgerUnusable` line, naming it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lifecycle_assets import storage
from lifecycle_assets.crash import crash_point
from lifecycle_assets.registry.ledger import Ledger, unusable, utc_now
from lifecycle_assets.registry.ledger_schema import PgTable

_COLUMNS = ("time", "model", "version", "sha256", "passed", "failed", "file", "dagster_run_id")
_APPEND_ONLY_MESSAGE = "the gate verdict record is append-only"
_SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS gate_verdicts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    passed INTEGER NOT NULL,
    failed TEXT NOT NULL,
    file TEXT NOT NULL,
    dagster_run_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gate_verdicts_by_version ON gate_verdicts (model, version, seq);
CREATE TRIGGER IF NOT EXISTS gate_verdicts_no_delete BEFORE DELETE ON gate_verdicts
BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END;
CREATE TRIGGER IF NOT EXISTS gate_verdicts_no_update BEFORE UPDATE ON gate_verdicts
BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END;
"""
_PG_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS gate_verdicts (
    seq BIGSERIAL PRIMARY KEY,
    time TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    passed BOOLEAN NOT NULL,
    failed TEXT NOT NULL,
    file TEXT NOT NULL,
    dagster_run_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gate_verdicts_by_version ON gate_verdicts (model, version, seq);
CREATE OR REPLACE FUNCTION gate_verdicts_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$;
CREATE OR REPLACE TRIGGER gate_verdicts_append_only BEFORE UPDATE OR DELETE ON gate_verdicts
FOR EACH ROW EXECUTE FUNCTION gate_verdicts_append_only();
CREATE OR REPLACE TRIGGER gate_verdicts_no_truncate BEFORE TRUNCATE ON gate_verdicts
FOR EACH STATEMENT EXECUTE FUNCTION gate_verdicts_append_only();
"""
# Made by the ledger's own transaction, as its table is.
_PG_TABLE = PgTable(
    name="gate_verdicts",
    in_place="SELECT to_regclass('gate_verdicts_by_version') IS NOT NULL AS in_place",
    in_place_args=(),
    lock_key=0x4741544556,  # "GATEV"
    ddl=_PG_SCHEMA,
)


@dataclass(frozen=True)
class VerdictRecord:
    """One evaluation of a version: its verdict, the SHA-256 of the `evaluation.json` that
    holds it, which file was written, and the Dagster run that evaluated it."""

    time: str
    model: str
    version: str
    sha256: str
    passed: bool
    failed: str
    file: str
    dagster_run_id: str = ""
    seq: int = 0


def seal_then_write(
    ledger: Ledger,
    model: str,
    version: str,
    value: dict[str, Any],
    file: storage.Location,
    *,
    dagster_run_id: str = "",
) -> bytes:
    """Record the verdict of `value["gates"]` and the SHA-256 of the JSON about to be written,
    then write it to `file` (`storage.json_bytes`); returns the bytes written.
    In this order so that no crash can leave a file that reads as unsealed (module docstring)."""
    data = storage.json_bytes(value)
    record_verdict(
        ledger, model, version, sha256=storage.sha256_bytes(data), gates=value["gates"],
        file=str(file), dagster_run_id=dagster_run_id,
    )  # fmt: skip
    crash_point("after-verdict-sealed")  # the fault-injection tests kill the run here
    storage.write_atomic(file, data)
    return data


def record_verdict(
    ledger: Ledger,
    model: str,
    version: str,
    *,
    sha256: str,
    gates: list[dict[str, Any]],
    file: str,
    dagster_run_id: str = "",
) -> VerdictRecord:
    """Append the verdict of `gates` (`GateResult.to_dict()` each) and the file's SHA-256."""
    failed = "; ".join(f"{g['name']}: {g.get('description', '')}" for g in gates if not g["passed"])
    record = VerdictRecord(
        utc_now(), model, str(version), sha256, not failed, failed, file, dagster_run_id
    )
    values = [getattr(record, c) for c in _COLUMNS]
    insert = f"INSERT INTO gate_verdicts ({', '.join(_COLUMNS)}) VALUES ({{}})"
    if _is_postgres(ledger):
        with ledger.transaction(_PG_TABLE) as cursor:
            marks = ", ".join(["%s"] * len(values))
            cursor.execute(insert.format(marks) + " RETURNING seq", values)
            seq = cursor.fetchone()["seq"]
    else:
        with ledger.connect() as conn:
            conn.executescript(_SQLITE_SCHEMA)
            seq = conn.execute(insert.format(", ".join("?" * len(values))), values).lastrowid
    return dataclasses.replace(record, seq=int(seq or 0))


def recorded_verdict(ledger: Ledger, model: str, version: str) -> VerdictRecord | None:
    """The newest verdict recorded for the version; None for one evaluated before verdicts
    were recorded (or never evaluated by the platform)."""
    query = "SELECT * FROM gate_verdicts WHERE model = {0} AND version = {0} ORDER BY seq DESC"
    if _is_postgres(ledger):
        with ledger.transaction(_PG_TABLE) as cursor:
            cursor.execute(query.format("%s") + " LIMIT 1", (model, str(version)))
            row = cursor.fetchone()
    else:
        with ledger.connect() as conn:
            conn.executescript(_SQLITE_SCHEMA)
            found = conn.execute(query.format("?") + " LIMIT 1", (model, str(version))).fetchone()
            row = None if found is None else dict(found)
    if row is None:
        return None
    try:
        return VerdictRecord(**{**dict(row), "passed": bool(row["passed"])})
    except TypeError as error:  # a table changed behind the platform's back
        raise unusable(ledger.where, f"gate verdict {row.get('seq', '?')}: {error}") from error


def _is_postgres(ledger: Ledger) -> bool:
    from lifecycle_assets.registry.ledger_pg import PostgresLedger

    return isinstance(ledger, PostgresLedger)
