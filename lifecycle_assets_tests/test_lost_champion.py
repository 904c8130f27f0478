"""A champion version deleted from the MLflow registry (its UI's "Delete") is loud and recoverable.

Before, a restarted service left that model out with a warning in its log only: `/readyz`
read "ready", `/models/<name>/metadata` said "not served here" as for a model that never had
a champion, and `lifecycle rollback`'s ledger entry read "rollback from unset". Now the service
starts with the other models and says, for this one, which version went and what to run, in
`/readyz`, `/metadata`, the model's routes and its log; `lifecycle status` names it the same
way; `lifecycle rollback` returns to the previous promoted version that still verifies,
recorded in the ledger, and the running service serves it. Real temporary registry and ledger,
real `bentoml serve`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import polars as pl
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.data.simulator import simulate_range
from lifecycle_assets.ml.features import feature_table
from lifecycle_assets.registry.aliases import move_alias
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.spec import BUILTIN_SPECS_DIR, load_spec
from lifecycle_assets_tests.conftest import register_champion
from lifecycle_assets_tests.test_hot_swap import FAST_POLL, register_copy, wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, serving

CHAMPION = config.CHAMPION_ALIAS


def _deleted_champion(v1: ModelRef) -> ModelRef:
    """v2 promoted over v1 by the platform, then deleted in MLflow directly."""
    v2 = register_copy(v1)
    move_alias(MlflowClient(), v2.name, CHAMPION, v2.version, reason="ok", actor="me")
    MlflowClient().delete_model_version(v2.name, v2.version)
    return v2


def register_expected_loss(settings: Settings) -> ModelRef:
    """The built-in regressor registered as `champion` beside the test's model: a second model
    for the service to serve."""
    loss = load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml")
    batches = simulate_range(dt.date(2026, 1, 1), 8, seed=42)
    return register_champion(
        settings, loss, pl.concat([feature_table(frame, loss) for _, frame in batches])
    )


def _why(v2: ModelRef) -> str:
    return (
        f"{v2.name} `champion` v{v2.version} was deleted from the registry: run "
        f"`lifecycle rollback {v2.name}` or promote another version"
    )


def test_status_and_rollback_name_the_deleted_champion(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    v1, name = registered_champion, registered_champion.name
    v2 = _deleted_champion(v1)
    status = CliRunner().invoke(main, ["status", name, "--service-url", ""])
    assert status.exit_code == 0, status.output
    assert f"missing: {_why(v2)}" in " ".join(status.output.split())
    as_json = CliRunner().invoke(main, ["status", name, "--service-url", "", "--json"])
    assert json.loads(as_json.stdout)["missing_reasons"] == {CHAMPION: _why(v2)}

    rolled = CliRunner().invoke(main, ["rollback", name, "--reason", "v2 deleted"])
    assert rolled.exit_code == 0, rolled.output
    last = Ledger.default().entries(name, CHAMPION)[-1]
    assert (last.kind, last.to_version, last.state) == ("rollback", v1.version, "COMMITTED")
    assert last.reason.startswith(
        f"rollback from v{v2.version} (deleted from the registry) to v{v1.version}"
    )
    assert str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version) == v1.version


@pytest.mark.e2e
def test_a_restarted_service_reports_the_deleted_champion_and_serves_the_others(
    registered_champion: ModelRef, lifecycle_env: Settings, tmp_path: Path
) -> None:
    v1, name = registered_champion, registered_champion.name
    loss = register_expected_loss(lifecycle_env)
    v2 = _deleted_champion(v1)
    why = _why(v2)
    with serving(SERVICE, tmp_path, **FAST_POLL) as url, httpx.Client(base_url=url) as c:
        ready = c.get("/readyz").json()
        assert (ready["status"], set(ready["models"])) == ("degraded", {loss.name})
        assert ready["not_served"] == {name: why}
        assert c.get("/metadata").json()["not_served"] == {name: why}
        answer = c.get(f"/models/{name}/metadata")
        assert answer.status_code == 503 and why in answer.text
        log = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
        assert f"NOT SERVING: {why}" in log

        status = CliRunner().invoke(main, ["status", name, "--service-url", url])
        assert f"missing: {why}" in " ".join(status.output.split())

        rolled = CliRunner().invoke(main, ["rollback", name])
        assert rolled.exit_code == 0, rolled.output
        wait_for(lambda: name in c.get("/models").json()["models"], seconds=20)
        body = c.get(f"/models/{name}/metadata").json()
        assert body["serving"]["champion"]["version"] == v1.version
        ready = c.get("/readyz").json()
        assert (ready["status"], ready["not_served"]) == ("ready", {})
