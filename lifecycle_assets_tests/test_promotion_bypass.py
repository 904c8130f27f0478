"""An alias set in MLflow directly (its UI, REST API, `MlflowClient`) is no promotion.

Only `registry/aliases.py` moves an alias after the version's checks, recording the move in
the ledger; anyone with write access to MLflow can still point `champion` at a version that
failed its gates. The service serves only what the ledger names as the platform's last move
of each alias, at start-up and on a swap, even after `reconcile` has recorded the outside
change; the previous holder keeps serving and `/metadata`, `/readyz`, `/metrics` and
`lifecycle status` say why. `lifecycle promote` of that version is how a person adopts it.
Real temporary registry and ledger, real `bentoml serve`.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.aliases import move_alias, reconcile
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_hot_swap import FAST_POLL, register_copy, wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, post, sample_records, serving

CHAMPION, CANARY = config.CHAMPION_ALIAS, config.CANARY_ALIAS
GAUGE = 'lifecycle_serving_degraded{model_name="credit_default"}'


def set_directly(ref: ModelRef, alias: str = CHAMPION) -> None:
    """What the MLflow UI's "add alias" does: no gate, no ledger."""
    MlflowClient().set_registered_model_alias(ref.name, alias, ref.version)


def served(client: httpx.Client) -> str:
    return client.get("/metadata").json()["serving"]["champion"]["version"]


@pytest.mark.e2e
def test_an_alias_set_in_mlflow_directly_never_serves(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    v1, name = registered_champion, registered_champion.name
    # A version that would verify (complete tags, matching SHA-256): only the ledger tells.
    v2 = register_copy(v1)
    set_directly(v2)
    reconcile(MlflowClient(), name)  # any later alias command records it as `external`
    records = sample_records(spec, 3)
    with serving(SERVICE, tmp_path, **FAST_POLL) as url, httpx.Client(base_url=url) as c:
        # Start-up: the ledger's champion serves, the outside holder is refused and reported.
        body = c.get("/metadata").json()
        assert body["serving"]["champion"]["version"] == v1.version
        degraded = body["degraded"]
        assert (degraded["registry_holder"], degraded["serving"]) == (v2.version, v1.version)
        assert "was not set through the platform" in degraded["reasons"][0]
        assert c.get("/readyz").json()["degraded"] == [name]
        assert f"{GAUGE} 1.0" in c.get("/metrics").text
        rows = post(c, records).json()["predictions"]
        assert {r["model_version"] for r in rows} == {v1.version}

        status = CliRunner().invoke(main, ["status", name, "--service-url", url])
        assert status.exit_code == 0, status.output
        line = " ".join(status.output.split())
        assert f"not promoted: {name} `champion` -> v{v2.version} was set outside" in line
        assert f"`lifecycle promote {name} {v2.version}` to keep it" in line

        # A person adopts it: recorded in the ledger, the service swaps without a move.
        move = move_alias(MlflowClient(), name, CHAMPION, v2.version, reason="ok", actor="me")
        assert move.adopted
        last = Ledger.default().entries(name, CHAMPION)[-1]
        assert (last.kind, last.to_version, last.actor) == ("move", v2.version, "me")
        wait_for(lambda: served(c) == v2.version)
        assert c.get("/metadata").json()["degraded"] is None

        # Live: an earlier champion set back by hand, and a canary set by hand, are refused.
        set_directly(v1)
        MlflowClient().set_registered_model_tag(name, config.TAG_CANARY_WEIGHT, "0.5")
        v3 = register_copy(v1)
        set_directly(v3, CANARY)
        wait_for(lambda: len(c.get("/metadata").json()["refused"]) >= 3)
        body = c.get("/metadata").json()
        assert body["serving"]["champion"]["version"] == v2.version
        assert body["serving"]["canary"] is None
        refused = {(r["role"], r["version"]) for r in body["refused"]}
        assert {("champion", v1.version), ("canary", v3.version)} <= refused
        assert body["degraded"]["registry_holder"] == v1.version
        rows = post(c, records).json()["predictions"]
        assert {(r["model_version"], r["variant"]) for r in rows} == {(v2.version, "champion")}


def test_promote_records_a_version_already_set_outside_the_platform(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    """Before, `promote` of the version the alias already named said "nothing changed" and
    recorded nothing, so there was no way to make an outside choice a promotion."""
    v2 = register_copy(registered_champion)
    set_directly(v2)
    name = v2.name
    result = CliRunner().invoke(main, ["promote", name, v2.version, "--reason", "reviewed"])
    assert result.exit_code == 0, result.output
    assert "set outside the platform, is now promoted" in " ".join(result.output.split())
    entries = Ledger.default().entries(name, CHAMPION)
    assert [(e.kind, e.from_version, e.to_version) for e in entries[-2:]] == [
        ("external", registered_champion.version, v2.version),
        ("move", v2.version, v2.version),
    ]
    # Promoting it again is a no-op, as for any version the platform already promoted.
    again = CliRunner().invoke(main, ["promote", name, v2.version])
    assert "already points to" in again.output
    assert len(Ledger.default().entries(name, CHAMPION)) == len(entries)


@pytest.mark.e2e
def test_a_version_of_another_model_never_serves(
    registered_champion: ModelRef, lifecycle_env: Settings, tmp_path: Path
) -> None:
    """Registered under `credit_default` from `expected_loss`'s files (the MLflow UI's
    "register model" on the wrong run): before, `promote` took it, and the service answered
    credit_default's route with a regressor that refused credit_default's fields."""
    import datetime as dt

    import polars as pl

    from lifecycle_assets.data.simulator import simulate_range
    from lifecycle_assets.ml.features import feature_table
    from lifecycle_assets.registry.ledger import AliasError
    from lifecycle_assets.spec import BUILTIN_SPECS_DIR, load_spec
    from lifecycle_assets_tests.conftest import register_champion

    loss = load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml")
    batches = simulate_range(dt.date(2026, 1, 1), 8, seed=42)
    loss_ref = register_champion(
        lifecycle_env, loss, pl.concat([feature_table(frame, loss) for _, frame in batches])
    )
    client, name = MlflowClient(), registered_champion.name

    def registered_here(**tags: str) -> str:
        tags = {**loss_ref.tags, **tags}
        return str(
            client.create_model_version(name, loss_ref.source, loss_ref.run_id, tags=tags).version
        )

    wrong = registered_here()
    with pytest.raises(AliasError, match="trained for model 'expected_loss', not 'credit_default'"):
        move_alias(client, name, CHAMPION, wrong, reason="careless", actor="me")
    result = CliRunner().invoke(main, ["promote", name, wrong])
    assert result.exit_code == 1
    assert "trained for model 'expected_loss'" in result.output

    # Its `spec_name` tag rewritten too: the hashes match, so the move goes through, but the
    # spec in the model's own files names the other model, and the service refuses it.
    forged = registered_here(**{config.TAG_SPEC_NAME: name})
    move_alias(client, name, CHAMPION, forged, reason="forged", actor="me")
    with serving(SERVICE, tmp_path, **FAST_POLL) as url, httpx.Client(base_url=url) as c:
        body = c.get(f"/models/{name}/metadata").json()
        assert body["serving"]["champion"]["version"] == registered_champion.version
        assert body["degraded"]["registry_holder"] == forged
        assert "trained for model 'expected_loss'" in body["degraded"]["reasons"][0]
        assert c.get("/models").json()["models"][name]["task"] == "binary_classification"


def test_status_names_a_champion_deleted_outside_the_platform(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    """Before, `status` showed `champion -` and nothing else while a running service still
    served the deleted version (and would serve nothing after a restart)."""
    import json

    v2 = register_copy(registered_champion)
    move_alias(MlflowClient(), v2.name, CHAMPION, v2.version, reason="ok", actor="me")
    MlflowClient().delete_model_version(v2.name, v2.version)  # the MLflow UI's "Delete"
    result = CliRunner().invoke(main, ["status", v2.name, "--service-url", ""])
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.split())
    assert f"missing: {v2.name} `champion` v{v2.version} was deleted from the registry" in line
    as_json = CliRunner().invoke(main, ["status", v2.name, "--service-url", "", "--json"])
    assert json.loads(as_json.stdout)["missing_in_registry"] == {CHAMPION: v2.version}


def test_promote_by_hand_of_a_version_its_gates_refused_needs_an_override(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    """Before, `lifecycle promote` (and the promote job) made a gate-refused version champion
    without a word, the ledger reading "promoted from the command line"."""
    import json

    from lifecycle_assets_tests.test_canary_gates import run_operation_job

    v1, name = registered_champion, registered_champion.name
    v2 = register_copy(v1)
    # Where the evaluation asset writes the version's verdicts (and logs them to its run).
    folder = lifecycle_env.reports_dir / name / f"v{v2.version}"
    folder.mkdir(parents=True)
    verdict = {"name": "auc_meets_minimum", "passed": False, "description": "AUC 0.61 < 0.7"}
    (folder / "evaluation.json").write_text(json.dumps({"gates": [verdict]}))

    refused = CliRunner().invoke(main, ["promote", name, v2.version])
    assert refused.exit_code == 1
    assert "failed its gates (auc_meets_minimum: AUC 0.61 < 0.7)" in refused.output
    assert "--override-gates" in refused.output
    assert not run_operation_job("promote", version=v2.version).success
    assert Ledger.default().entries(name, CHAMPION)[-1].to_version == v1.version

    overridden = run_operation_job(
        "promote", version=v2.version, override_gates=True, reason="demo"
    )
    assert overridden.success
    last = Ledger.default().entries(name, CHAMPION)[-1]
    assert last.to_version == v2.version
    assert last.reason == "demo (overriding failed gates: auc_meets_minimum: AUC 0.61 < 0.7)"
