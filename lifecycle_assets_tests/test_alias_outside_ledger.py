"""An alias changed in MLflow behind the ledger is worded for what happened, with what follows.

Before, the start-up reconcile recorded a `champion` alias deleted in MLflow as "the alias was
changed outside the ledger", as it recorded one moved to another version, and said nothing at
start-up; `lifecycle history` noted "changed outside the ledger" too. A deletion now reads
"deleted outside the ledger" with what follows (the ledger keeps its promoted champion, no other
version serves in its place, and the way out), a move "moved outside the ledger" (not a
promotion, and how to make it one), and the start-up reconcile says each in one line. Real
temporary registry and ledger.
"""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.recovery import reconcile_registry, report
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.promotions import promoted_version
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets_tests.test_hot_swap import register_copy

CHAMPION = config.CHAMPION_ALIAS


def _history_note(name: str) -> str:
    result = CliRunner().invoke(main, ["history", name])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_a_champion_alias_deleted_in_mlflow_is_reconciled_as_deleted(
    registered_champion: ModelRef, lifecycle_env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    name, v1 = registered_champion.name, registered_champion.version
    MlflowClient().delete_registered_model_alias(name, CHAMPION)
    assert (
        f"the registry shows `champion` -> unset, the ledger v{v1}: deleted outside the ledger"
        in _history_note(name)
    )

    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        recovery = report(reconcile_registry(MlflowClient(), [name]))
    why = (
        f"the alias was deleted outside the ledger (v{v1}); the ledger keeps v{v1} as the "
        f"promoted `champion` and no other version serves in its place: run `lifecycle "
        f"rollback {name}` or promote another version"
    )
    assert recovery.outside_changes == [f"{name} `champion`: {why}"]
    assert f"{name} `champion`: {why}" in caplog.text
    last = Ledger.default().entries(name, CHAMPION)[-1]
    assert (last.kind, last.from_version, last.to_version, last.reason) == (
        "external", v1, None, why,
    )  # fmt: skip
    assert promoted_version(Ledger.default(), name, CHAMPION) == v1, "the champion is kept"
    assert "note:" not in _history_note(name), "recorded: nothing left to note"


def test_a_champion_alias_moved_in_mlflow_is_reconciled_as_moved(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    name, v1 = registered_champion.name, registered_champion.version
    v2 = register_copy(registered_champion).version
    MlflowClient().set_registered_model_alias(name, CHAMPION, v2)
    assert (
        f"the registry shows `champion` -> v{v2}, the ledger v{v1}: moved outside the ledger"
        in _history_note(name)
    )

    recovery = reconcile_registry(MlflowClient(), [name])
    why = (
        f"the alias was moved outside the ledger (v{v1} -> v{v2}); not a promotion: the ledger "
        f"keeps v{v1} as the promoted `champion` (`lifecycle promote {name} {v2}` would make "
        f"v{v2} one)"
    )
    assert recovery.outside_changes == [f"{name} `champion`: {why}"]
    assert Ledger.default().entries(name, CHAMPION)[-1].reason == why
