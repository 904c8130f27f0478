"""The alias ledger: append-only, survives restarts, matches the registry after races and kills."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.training import fit_pipeline
from lifecycle_assets.registry.aliases import (
    AliasError,
    ConcurrentAliasChange,
    move_alias,
    reconcile,
    remove_alias,
    rollback,
)
from lifecycle_assets.registry.ledger import (
    ABORTED,
    COMMITTED,
    PENDING,
    Ledger,
    LedgerEntry,
    LedgerUnusable,
    history,
    previous_holder,
)
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets.spec import ModelSpec, default_spec
from lifecycle_assets_tests.conftest import register_pipeline

CHAMPION = config.CHAMPION_ALIAS


@pytest.fixture(scope="session")
def fitted_pipeline(small_feature_table: pl.DataFrame) -> Pipeline:
    """One fit for the whole session: what the versions contain does not matter here."""
    return fit_pipeline(small_feature_table, default_spec())


def register_versions(
    count: int, spec: ModelSpec, pipeline: Pipeline, table: pl.DataFrame
) -> list[str]:
    """Register one real version as `registered_champion` does, then `count - 1` more of it.

    The extra versions are registered from the same logged model (same source, run and tags):
    real registry versions, without paying for another `log_model` each. The first one is made
    `champion` by "pytest", through the ledger.
    """
    ref = register_pipeline(Settings.from_env(), spec, pipeline, table)
    client = MlflowClient()
    versions = [ref.version]
    for _ in range(count - 1):
        copy = client.create_model_version(spec.name, ref.source, ref.run_id, tags=ref.tags)
        versions.append(str(copy.version))
    return versions


@pytest.fixture
def three_versions(
    lifecycle_env: Settings,
    spec: ModelSpec,
    fitted_pipeline: Pipeline,
    small_feature_table: pl.DataFrame,
) -> list[str]:
    """Versions 1 (`champion`), 2 and 3 in the temporary registry."""
    return register_versions(3, spec, fitted_pipeline, small_feature_table)


def assert_ledger_matches_registry(client: MlflowClient, name: str) -> None:
    ledger = Ledger.default()
    assert not ledger.entries(name, state=PENDING)
    recorded = {alias: e.to_version for alias, e in ledger.holders(name).items()}
    live = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    assert {a: v for a, v in recorded.items() if v is not None} == live


def entry(model: str, frm: str | None, to: str | None, kind: str = "move") -> LedgerEntry:
    return LedgerEntry.new(model, CHAMPION, frm, to, kind=kind, reason="test", actor="pytest")


def test_ledger_survives_restart_in_order_and_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "registry" / "ledger.sqlite"
    first = Ledger(path)
    written = [first.append(entry("m", frm, to)) for frm, to in ((None, "1"), ("1", "2"))]
    first.settle(written[0].operation_id, COMMITTED)
    first.settle(written[1].operation_id, ABORTED, "test")
    first.append(entry("other", None, "7"))

    reopened = history("m", CHAMPION, ledger=Ledger(path))  # a new object: a "restart"
    assert [(e.from_version, e.to_version, e.state) for e in reopened] == [
        (None, "1", COMMITTED),
        ("1", "2", ABORTED),
    ]
    assert reopened[0].seq < reopened[1].seq and reopened[1].note == "test"
    assert reopened[0].time.endswith("+00:00") and reopened[0].settled_at
    with sqlite3.connect(path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM alias_ledger")
        with pytest.raises(sqlite3.IntegrityError, match="only a PENDING"):
            conn.execute("UPDATE alias_ledger SET to_version = '9' WHERE model = 'm'")
        with pytest.raises(sqlite3.IntegrityError, match="only a PENDING"):
            conn.execute("UPDATE alias_ledger SET state = 'ABORTED' WHERE to_version = '1'")


@pytest.mark.parametrize(
    ("column", "value", "why"),
    [
        ("time", "yesterday", "entry 2 is corrupt: time 'yesterday' is not an ISO 8601 time"),
        ("kind", "teleport", "entry 2 is corrupt: kind 'teleport' is not one of move,"),
        ("to_version", b"3", "entry 2 is corrupt: to_version b'3' is not str"),  # a BLOB
    ],
)
def test_a_corrupt_row_is_one_line_naming_the_ledger_and_the_entry(
    tmp_path: Path, column: str, value: object, why: str
) -> None:
    """A row written behind the ledger's back (SQLite keeps any type in any column) stops every
    reader in the one shape both ledgers use (test_ledger_pg_errors.py), not in a crash later."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.settle(ledger.append(entry("m", None, "1")).operation_id, COMMITTED)
    good = ledger.append(entry("m", "1", "2"))
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER alias_ledger_settle_only")  # a hand edit
    conn.execute(f"UPDATE alias_ledger SET {column} = ? WHERE seq = ?", (value, good.seq))
    conn.commit()
    conn.close()
    with pytest.raises(LedgerUnusable) as raised:
        ledger.entries("m")
    message = str(raised.value)
    assert message.startswith(f"the alias ledger {path} cannot be used: {why}"), message
    assert len(message.splitlines()) == 1


def test_previous_holder_goes_further_back_after_each_rollback(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")

    def commit(frm: str | None, to: str | None, kind: str = "move") -> None:
        ledger.settle(ledger.append(entry("m", frm, to, kind)).operation_id, COMMITTED)

    assert previous_holder("m", CHAMPION, ledger=ledger) is None
    for frm, to in ((None, "1"), ("1", "2"), ("2", "3")):
        commit(frm, to)
    assert previous_holder("m", CHAMPION, ledger=ledger) == "2"
    assert previous_holder("m", CHAMPION, usable=lambda v: v != "2", ledger=ledger) == "1"
    commit("3", "2", "rollback")
    assert previous_holder("m", CHAMPION, ledger=ledger) == "1"  # not back to the bad v3
    commit("2", "1", "rollback")
    assert previous_holder("m", CHAMPION, ledger=ledger) is None


def test_promote_then_roll_back_step_by_step_and_to_a_version(
    lifecycle_env: Settings, three_versions: list[str], spec: ModelSpec
) -> None:
    client = MlflowClient()
    v1, v2, v3 = three_versions
    previous, current = move_alias(
        client, spec.name, CHAMPION, v2, reason="better", actor="alice", expected_version=v1
    )
    assert previous is not None and previous.version == v1 and current.version == v2
    assert current.tags[f"{CHAMPION}_by"] == "alice"
    move_alias(client, spec.name, CHAMPION, v3, reason="even better", actor="bob")

    previous, current = rollback(client, spec.name, actor="carol", reason="bad v3")
    assert (previous.version, current.version) == (v3, v2)
    _, current = rollback(client, spec.name, actor="carol")
    assert current.version == v1
    with pytest.raises(AliasError, match="no earlier"):
        rollback(client, spec.name, actor="carol")
    _, current = rollback(client, spec.name, actor="dave", to_version=v3)
    assert resolve(client, spec.name, CHAMPION).version == v3

    steps = history(spec.name, CHAMPION)
    assert [(e.from_version, e.to_version, e.kind, e.actor) for e in steps] == [
        (None, v1, "move", "pytest"),
        (v1, v2, "move", "alice"),
        (v2, v3, "move", "bob"),
        (v3, v2, "rollback", "carol"),
        (v2, v1, "rollback", "carol"),
        (v1, v3, "rollback", "dave"),
    ]
    assert all(e.state == COMMITTED for e in steps)
    assert steps[3].reason == f"rollback from v{v3} to v{v2}: bad v3"
    times = [e.time for e in steps]
    assert times == sorted(times)
    assert_ledger_matches_registry(client, spec.name)


def test_guards_remove_and_changes_made_behind_the_ledgers_back(
    lifecycle_env: Settings, three_versions: list[str], spec: ModelSpec
) -> None:
    client = MlflowClient()
    v1, v2, v3 = three_versions
    with pytest.raises(ConcurrentAliasChange, match=f"expected v{v2}, the registry shows v{v1}"):
        move_alias(client, spec.name, CHAMPION, v3, reason="r", actor="a", expected_version=v2)
    with pytest.raises(AliasError, match="has no version '99'"):
        move_alias(client, spec.name, CHAMPION, "99", reason="r", actor="a")
    with pytest.raises(AliasError, match="no registered model"):
        move_alias(client, "nope", CHAMPION, v1, reason="r", actor="a")
    client.set_model_version_tag(spec.name, v3, config.TAG_RETIRED, "true")
    with pytest.raises(AliasError, match="retired"):
        move_alias(client, spec.name, CHAMPION, v3, reason="r", actor="a")

    # Written straight to MLflow: the next operation records it as an external change.
    client.set_registered_model_alias(spec.name, config.CHALLENGER_ALIAS, v2)
    move_alias(client, spec.name, config.SHADOW_ALIAS, v2, reason="shadow it", actor="a")
    external = history(spec.name, config.CHALLENGER_ALIAS)
    assert [(e.to_version, e.kind, e.state) for e in external] == [(v2, "external", COMMITTED)]
    assert move_alias(client, spec.name, CHAMPION, v1, reason="same", actor="a")[1].version == v1
    assert len(history(spec.name, CHAMPION)) == 1  # a no-op move records nothing

    removed = remove_alias(client, spec.name, config.SHADOW_ALIAS, reason="done", actor="a")
    assert removed is not None and removed.version == v2
    assert resolve(client, spec.name, config.SHADOW_ALIAS) is None
    assert history(spec.name, config.SHADOW_ALIAS)[-1].to_version is None
    assert_ledger_matches_registry(client, spec.name)


CHILD = """
import json, os, sys, time
from pathlib import Path
from mlflow import MlflowClient
from lifecycle_assets.registry import aliases

version, expected, fault, signal_dir = sys.argv[1:5]
if fault == "sleep":  # hold the lock a while so that the two processes really overlap
    aliases._checkpoint = lambda step: time.sleep(0.5) if step == "pending-written" else None
elif fault:
    aliases._checkpoint = lambda step: os._exit(97) if step == fault else None
client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_TRACKING_URI"])
signals = Path(signal_dir)
(signals / f"ready-{version}").touch()
while not (signals / "go").exists():
    time.sleep(0.005)
try:
    aliases.move_alias(client, "credit_default", "champion", version, reason="race",
                       actor=f"proc-{version}", expected_version=expected)
    print(json.dumps({"version": version, "won": True}))
except aliases.ConcurrentAliasChange as error:
    print(json.dumps({"version": version, "won": False, "actual": error.actual}))
"""


def run_children(tmp_path: Path, jobs: list[tuple[str, str, str]]) -> list[subprocess.Popen]:
    """Start one process per (version, expected, fault), release them together, wait."""
    signals = tmp_path / "signals"
    signals.mkdir(exist_ok=True)
    for stale in signals.iterdir():
        stale.unlink()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, version, expected, fault, str(signals)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version, expected, fault in jobs
    ]
    deadline = time.monotonic() + 60
    while len(list(signals.glob("ready-*"))) < len(jobs) and time.monotonic() < deadline:
        time.sleep(0.01)
    (signals / "go").touch()
    for child in children:
        child.wait(timeout=60)
    return children


def test_two_concurrent_promotions_exactly_one_wins(
    lifecycle_env: Settings, three_versions: list[str], spec: ModelSpec, tmp_path: Path
) -> None:
    client = MlflowClient()
    v1, v2, v3 = three_versions
    children = run_children(tmp_path, [(v2, v1, "sleep"), (v3, v1, "sleep")])
    results = []
    for child in children:
        assert child.returncode == 0, child.stderr.read()
        results.append(json.loads(child.stdout.read().strip().splitlines()[-1]))
    winners = [r["version"] for r in results if r["won"]]
    losers = [r for r in results if not r["won"]]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0]["actual"] == winners[0]
    assert resolve(client, spec.name, CHAMPION).version == winners[0]
    steps = history(spec.name, CHAMPION)
    assert [(e.from_version, e.to_version, e.state) for e in steps[1:]] == [
        (v1, winners[0], COMMITTED)
    ]
    assert_ledger_matches_registry(client, spec.name)


def test_a_process_killed_between_steps_is_reconciled(
    lifecycle_env: Settings, three_versions: list[str], spec: ModelSpec, tmp_path: Path
) -> None:
    client = MlflowClient()
    v1, v2, v3 = three_versions

    # Killed after the PENDING entry, before the registry write: the move never happened.
    (child,) = run_children(tmp_path, [(v2, v1, "pending-written")])
    assert child.returncode == 97
    assert history(spec.name, CHAMPION)[-1].state == PENDING
    assert resolve(client, spec.name, CHAMPION).version == v1
    (aborted,) = reconcile(client, spec.name)
    assert (aborted.to_version, aborted.state) == (v2, ABORTED)
    assert_ledger_matches_registry(client, spec.name)

    # Killed after the registry write, before COMMITTED: the move happened.
    (child,) = run_children(tmp_path, [(v3, v1, "alias-set")])
    assert child.returncode == 97
    assert history(spec.name, CHAMPION)[-1].state == PENDING
    assert resolve(client, spec.name, CHAMPION).version == v3
    # The next operation of any kind settles it first, so the rollback knows where to go.
    previous, current = rollback(client, spec.name, actor="pytest")
    assert (previous.version, current.version) == (v3, v1)
    settled = [e for e in history(spec.name, CHAMPION) if e.to_version == v3]
    assert [e.state for e in settled] == [COMMITTED]
    assert "reconciled" in settled[0].note
    assert resolve(client, spec.name, v3).tags[f"{CHAMPION}_by"] == f"proc-{v3}"
    assert_ledger_matches_registry(client, spec.name)
