"""Every canary weight the platform sets is a ledger entry; a weight tag edited in MLflow is not.

Before, the weight lived only in the registered model's `canary_weight` tag: a new weight for
the same canary wrote the tag and nothing else, so an edit in MLflow (the UI, the REST API)
was indistinguishable from `lifecycle canary`, and the service obeyed it. Real temporary
MLflow registry and SQLite ledger (the PostgreSQL ledger: test_ledger_pg_weight.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.canary import set_canary
from lifecycle_assets.registry.ledger import COMMITTED, Ledger, LedgerEntry
from lifecycle_assets.registry.promotions import promoted_weight, registry_weight
from lifecycle_assets.registry.reader import reader_of
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets_tests.test_hot_swap import register_copy

CANARY, TAG = config.CANARY_ALIAS, config.TAG_CANARY_WEIGHT

# The ledger table as it was created before weights were recorded (verbatim, main 1399ede).
OLD_SCHEMA = """
CREATE TABLE alias_ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, operation_id TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL, model TEXT NOT NULL, alias TEXT NOT NULL, from_version TEXT,
    to_version TEXT, kind TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL,
    dagster_run_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('PENDING', 'COMMITTED', 'ABORTED')),
    settled_at TEXT, note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alias_ledger_by_model ON alias_ledger (model, alias, seq);
CREATE TRIGGER alias_ledger_no_delete BEFORE DELETE ON alias_ledger
BEGIN SELECT RAISE(ABORT, 'the alias ledger is append-only'); END;
CREATE TRIGGER alias_ledger_settle_only BEFORE UPDATE ON alias_ledger
WHEN OLD.state != 'PENDING' OR NEW.state = 'PENDING' OR NEW.to_version IS NOT OLD.to_version
BEGIN SELECT RAISE(ABORT, 'only a PENDING ledger entry can change, and only to settle'); END;
INSERT INTO alias_ledger (operation_id, time, model, alias, from_version, to_version, kind,
    reason, actor, dagster_run_id, state, settled_at)
VALUES ('op1', '2026-01-01T00:00:00.000+00:00', 'm', 'canary', NULL, '2', 'move',
    'canary weight 0.1: old', 'me', '', 'COMMITTED', '2026-01-01T00:00:00.001+00:00');
"""


def canary_entries(name: str) -> list[tuple[str, str | None, str | None, float | None]]:
    return [
        (e.kind, e.from_version, e.to_version, e.weight)
        for e in Ledger.default().entries(name, CANARY)
    ]


def test_each_new_weight_is_a_ledger_entry_and_an_edited_tag_is_not(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    v2 = register_copy(registered_champion)
    name, client, ledger = v2.name, MlflowClient(), Ledger.default()
    set_canary(client, name, v2.version, 0.1, reason="try", actor="me")
    set_canary(client, name, v2.version, 0.3, reason="more", actor="me")
    set_canary(client, name, v2.version, 0.3, reason="same", actor="me")  # nothing new
    assert canary_entries(name) == [
        ("move", None, v2.version, 0.1),
        ("weight", v2.version, v2.version, 0.3),
    ]
    assert Ledger.default().entries(name, CANARY)[-1].reason == "canary weight 0.3: more"

    client.set_registered_model_tag(name, TAG, "1.0")  # the MLflow UI
    assert promoted_weight(ledger, name, v2.version) == 0.3
    status = CliRunner().invoke(main, ["status", name, "--service-url", ""])
    assert status.exit_code == 0, status.output
    line = " ".join(status.output.split())
    assert (
        f"weight not obeyed: {name} `canary` v{v2.version} has weight '1.0' in the registry, "
        "but 0.3 in the ledger (changed outside the platform): traffic follows the ledger's 0.3"
    ) in line, line

    # The weight the ledger holds, set again: the tag is restored, the ledger has nothing new.
    set_canary(client, name, v2.version, 0.3, reason="restore", actor="me")
    assert registry_weight(reader_of(client), name) == "0.3"
    assert len(canary_entries(name)) == 2
    status = CliRunner().invoke(main, ["status", name, "--service-url", "", "--json"])
    assert '"weight_problem": null' in status.output


def test_a_ledger_written_before_weights_is_migrated_and_stays_append_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    ledger = Ledger(path)
    (old,) = ledger.entries("m")
    assert (old.to_version, old.weight, old.state) == ("2", None, COMMITTED)
    # No weight was recorded for it: the canary it names gets no traffic until one is.
    assert promoted_weight(ledger, "m", "2") is None

    new = LedgerEntry.new("m", CANARY, "2", "2", kind="weight", reason="r", actor="a", weight=0.2)
    ledger.settle(ledger.append(new).operation_id, COMMITTED)
    assert promoted_weight(ledger, "m", "2") == 0.2
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(alias_ledger)")]
        assert columns[-1] == "weight"
        for statement in (
            "UPDATE alias_ledger SET weight = 1.0",  # the old trigger did not guard it
            "UPDATE alias_ledger SET weight = 1.0 WHERE weight IS NULL",
            "DELETE FROM alias_ledger",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(statement)
        with pytest.raises(sqlite3.IntegrityError):  # a weight is a share of the traffic
            conn.execute(
                "INSERT INTO alias_ledger (operation_id, time, model, alias, kind, reason, "
                "actor, dagster_run_id, state, weight) VALUES "
                "('x', 't', 'm', 'canary', 'weight', 'r', 'a', '', 'PENDING', 2.0)"
            )
    assert [e.weight for e in Ledger(path).entries("m")] == [None, 0.2]


def test_a_weight_left_pending_is_settled_by_the_tag_it_writes(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    """A `lifecycle canary` killed between its ledger entry and its tag: the alias did not
    move, so only the tag says whether the new weight was written."""
    from lifecycle_assets.registry.aliases import reconcile

    v2 = register_copy(registered_champion)
    name, client, ledger = v2.name, MlflowClient(), Ledger.default()
    set_canary(client, name, v2.version, 0.1, reason="try", actor="me")

    def pending(weight: float) -> LedgerEntry:
        return ledger.append(
            LedgerEntry.new(name, CANARY, v2.version, v2.version, kind="weight",
                            reason="killed", actor="me", weight=weight)
        )  # fmt: skip

    pending(0.4)  # the tag still says 0.1: never written
    reconcile(client, name)
    assert [e.state for e in ledger.entries(name, CANARY)][-1] == "ABORTED"
    assert promoted_weight(ledger, name, v2.version) == 0.1

    pending(0.4)
    client.set_registered_model_tag(name, TAG, "0.4")  # written, then killed
    reconcile(client, name)
    assert [e.state for e in ledger.entries(name, CANARY)][-1] == COMMITTED
    assert promoted_weight(ledger, name, v2.version) == 0.4


class CountingLedger(Ledger):
    """The real SQLite ledger, keeping which reads of its entries were asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: list[tuple[str | None, str | None]] = []

    def entries(
        self, model: str, alias: str | None = None, state: str | None = None
    ) -> list[LedgerEntry]:
        self.reads.append((alias, state))
        return super().entries(model, alias, state)


def test_a_move_reads_the_ledger_once_under_its_lock(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    """Under the model's lock, after reconcile (which reads the PENDING and COMMITTED entries it
    settles), nothing else appends to the model's entries: the move reads them once, for whether
    it adopts the alias and for the canary's recorded weight, instead of once for each."""
    v2 = register_copy(registered_champion)
    name, client = v2.name, MlflowClient()
    ledger = CountingLedger(Ledger.default().path)
    set_canary(client, name, v2.version, 0.1, reason="try", actor="me", ledger=ledger)
    set_canary(client, name, v2.version, 0.3, reason="more", actor="me", ledger=ledger)
    set_canary(client, name, v2.version, 0.3, reason="same", actor="me", ledger=ledger)
    moves = [read for read in ledger.reads if read[1] is None]  # reconcile's name a state
    assert moves == [(None, None)] * 3, ledger.reads
    assert canary_entries(name) == [
        ("move", None, v2.version, 0.1),
        ("weight", v2.version, v2.version, 0.3),
    ]
