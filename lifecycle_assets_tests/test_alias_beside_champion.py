"""Champion, canary and shadow never share a version, and a canary never lacks its weight.

Promoting (or rolling back) `champion` to the version that is the canary or the shadow ends that
canary or shadow in the same registry write: the service would otherwise compare the champion
with itself. `promote --alias canary` would set a canary with no weight of its own (the last
canary's, or none): it is refused, pointing at `lifecycle canary`. Real temporary registry.
"""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.registry import aliases
from lifecycle_assets.registry.aliases import AliasError, move_alias, reconcile, rollback
from lifecycle_assets.registry.canary import promote_canary, set_canary, set_shadow
from lifecycle_assets.registry.ledger import COMMITTED, Ledger, history
from lifecycle_assets.registry.promotions import registry_weight
from lifecycle_assets.registry.reader import reader_for, reader_of
from lifecycle_assets.registry.registry_client import registry_client
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_ledger import (  # noqa: F401
    assert_ledger_matches_registry,
    fitted_pipeline,
    register_versions,
)

CHAMPION, CANARY, SHADOW = config.CHAMPION_ALIAS, config.CANARY_ALIAS, config.SHADOW_ALIAS


@pytest.fixture
def versions(
    lifecycle_env: Settings,
    spec: ModelSpec,
    fitted_pipeline: Pipeline,  # noqa: F811
    small_feature_table: pl.DataFrame,
) -> list[str]:
    """Versions 1 (`champion`), 2 and 3."""
    return register_versions(3, spec, fitted_pipeline, small_feature_table)


def live(name: str) -> dict[str, str]:
    return reader_for(Settings.from_env()).aliases(name) or {}


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_promoting_the_canary_ends_it_with_its_weight(versions: list[str], spec: ModelSpec) -> None:
    (v1, v2, v3), name, client = versions, spec.name, MlflowClient()
    set_canary(client, name, v2, 0.2, reason="try", actor="pytest")
    set_shadow(client, name, v3, reason="watch", actor="pytest")

    result = cli("promote", name, v2, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "model": name, "alias": CHAMPION, "previous": v1, "current": v2, "changed": True,
        "ended": {CANARY: v2},
    }  # fmt: skip
    assert live(name) == {CHAMPION: v2, SHADOW: v3}  # the shadow of another version stays
    assert registry_weight(reader_of(client), name) is None
    ended = history(name, CANARY)[-1]
    assert (ended.from_version, ended.to_version, ended.kind, ended.state) == (
        v2, None, "remove", COMMITTED,
    )  # fmt: skip
    assert f"v{v2} became champion" in ended.reason
    assert_ledger_matches_registry(client, name)

    # A rollback to the shadow's version ends the shadow; the text says so.
    result = cli("rollback", name, "--to", v3)
    assert result.exit_code == 0, result.output
    assert f"`{SHADOW}` v{v3} ended: it is now the champion" in result.stdout
    assert live(name) == {CHAMPION: v3}
    assert_ledger_matches_registry(client, name)


def test_a_version_that_is_both_canary_and_shadow_loses_both_in_one_write(
    versions: list[str], spec: ModelSpec
) -> None:
    """Through the SQLite writer (the CLI's): one transaction; a crash before it changes
    nothing, after it reconciles to all of it."""
    (v1, v2, _), name = versions, spec.name
    client = registry_client(Settings.from_env())
    set_canary(client, name, v2, 0.3, reason="try", actor="pytest")
    set_shadow(client, name, v2, reason="watch", actor="pytest")
    before = len(Ledger.default().entries(name))

    def crash(step: str) -> None:
        if step == "pending-written":
            raise RuntimeError("killed")

    original = aliases._checkpoint
    aliases._checkpoint = crash
    try:
        with pytest.raises(RuntimeError, match="killed"):
            move_alias(client, name, CHAMPION, v2, reason="r", actor="pytest")
    finally:
        aliases._checkpoint = original
    assert live(name) == {CHAMPION: v1, CANARY: v2, SHADOW: v2}
    reconcile(client, name)
    settled = Ledger.default().entries(name)[before:]
    assert {(e.alias, e.state) for e in settled} == {
        (CHAMPION, "ABORTED"), (CANARY, "ABORTED"), (SHADOW, "ABORTED"),
    }  # fmt: skip

    moved = move_alias(client, name, CHAMPION, v2, reason="r", actor="pytest")
    assert moved.ended == {CANARY: v2, SHADOW: v2}
    assert live(name) == {CHAMPION: v2}
    assert registry_weight(reader_of(client), name) is None
    assert_ledger_matches_registry(MlflowClient(), name)


def test_the_canary_analysis_promotion_ends_the_canary_in_the_same_write(
    versions: list[str], spec: ModelSpec
) -> None:
    """Killed right after the registry write: the canary is already gone with it (it was a
    second operation, so a crash there left champion and canary on one version)."""
    (_, v2, _), name, client = versions, spec.name, MlflowClient()
    set_canary(client, name, v2, 0.5, reason="try", actor="pytest")
    before = len(Ledger.default().entries(name))

    def crash(step: str) -> None:
        if step == "alias-set":
            raise RuntimeError("killed")

    original = aliases._checkpoint
    aliases._checkpoint = crash
    try:
        with pytest.raises(RuntimeError, match="killed"):
            promote_canary(client, name, reason="better", actor="pytest", expected_version=v2)
    finally:
        aliases._checkpoint = original
    assert live(name) == {CHAMPION: v2}
    reconcile(client, name)
    added = Ledger.default().entries(name)[before:]
    assert [(e.alias, e.to_version, e.state) for e in added] == [
        (CHAMPION, v2, COMMITTED), (CANARY, None, COMMITTED),
    ]  # fmt: skip
    assert_ledger_matches_registry(client, name)


def test_a_canary_is_set_only_with_its_weight(versions: list[str], spec: ModelSpec) -> None:
    (_, v2, v3), name, client = versions, spec.name, MlflowClient()
    result = cli("promote", name, v2, "--alias", CANARY)
    assert result.exit_code == 1
    assert "lifecycle canary" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert CANARY not in live(name)

    # Nor can the canary inherit another canary's weight through a bare move or a rollback.
    set_canary(client, name, v2, 0.25, reason="try", actor="pytest")
    with pytest.raises(AliasError, match="lifecycle canary"):
        move_alias(client, name, CANARY, v3, reason="r", actor="pytest")
    set_canary(client, name, v3, 0.5, reason="next", actor="pytest")
    with pytest.raises(AliasError, match="lifecycle canary"):
        rollback(client, name, actor="pytest", alias=CANARY)
    assert live(name)[CANARY] == v3 and registry_weight(reader_of(client), name) == "0.5"

    # `--alias shadow` is what `lifecycle shadow` does (a shadow has no weight): allowed, and
    # refused on the champion's own version as the command refuses it.
    assert cli("promote", name, v2, "--alias", SHADOW).exit_code == 0
    refused = cli("promote", name, "1", "--alias", SHADOW)
    assert refused.exit_code == 1 and "is the champion" in refused.stderr
    assert live(name)[SHADOW] == v2
    assert_ledger_matches_registry(client, name)


def test_the_promote_job_ends_the_canary_and_its_observation_says_so(
    versions: list[str], spec: ModelSpec
) -> None:
    from lifecycle_assets.defs.operations import build_operation_jobs
    from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
    from lifecycle_assets_tests.test_operations import observations

    (_, v2, _), name, client = versions, spec.name, MlflowClient()
    set_canary(client, name, v2, 0.1, reason="try", actor="pytest")
    job = {job.name: job for job in build_operation_jobs(spec)}[f"{name}_promote_job"]
    node = job.graph.node_defs[0].name
    result = job.execute_in_process(
        run_config={"ops": {node: {"config": {"version": v2}}}},
        instance=dg.DagsterInstance.ephemeral(),
        resources={"lifecycle": LifecycleResource(), "mlflow": MlflowResource()},
    )
    assert result.success
    [observed] = observations(result, job)
    assert observed["to"] == v2 and observed["ended"] == f"{CANARY} v{v2}"
    assert live(name) == {CHAMPION: v2} and registry_weight(reader_of(client), name) is None
