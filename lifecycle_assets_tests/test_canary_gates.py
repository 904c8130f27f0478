"""A version whose gates failed answers no traffic as canary without a person's override.

Before, `lifecycle canary` (and the canary job) sent live traffic to a version `promote`
refuses: the gate rule (`registry/gate_record.py`) only guarded `champion`. Now the canary
is refused in one line naming the failed gates unless --override-gates is given, and the
override is kept in the ledger's reason, as a promotion's is; the canary analysis never
promotes such a canary to champion. Real temporary MLflow registry and ledger.
"""

from __future__ import annotations

import json

import dagster as dg
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import ModelRef, resolve
from lifecycle_assets_tests.test_hot_swap import register_copy

CANARY = config.CANARY_ALIAS
FAILED = "auc_meets_minimum: AUC 0.61 < 0.7"


def gate_refused_copy(champion: ModelRef, settings: Settings) -> ModelRef:
    """A new version whose evaluation (where the evaluation asset writes it) failed a gate."""
    ref = register_copy(champion)
    folder = settings.reports_dir / ref.name / f"v{ref.version}"
    folder.mkdir(parents=True)
    verdict = {"name": "auc_meets_minimum", "passed": False, "description": "AUC 0.61 < 0.7"}
    (folder / "evaluation.json").write_text(json.dumps({"gates": [verdict]}))
    return ref


def test_cli_canary_of_a_gate_refused_version_needs_an_override(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    v2 = gate_refused_copy(registered_champion, lifecycle_env)
    name = v2.name
    refused = CliRunner().invoke(main, ["canary", name, v2.version, "--weight", "0.2"])
    assert refused.exit_code == 1, refused.output
    assert refused.exception is None or isinstance(refused.exception, SystemExit)
    assert "Traceback" not in refused.output
    assert f"failed its gates ({FAILED})" in refused.output
    assert "--override-gates" in refused.output
    assert resolve(MlflowClient(), name, CANARY) is None
    assert Ledger.default().entries(name, CANARY) == []

    args = ["canary", name, v2.version, "--weight", "0.2", "--override-gates", "--reason", "try"]
    accepted = CliRunner().invoke(main, args)
    assert accepted.exit_code == 0, accepted.output
    assert resolve(MlflowClient(), name, CANARY).version == v2.version
    last = Ledger.default().entries(name, CANARY)[-1]
    assert (last.to_version, last.state) == (v2.version, "COMMITTED")
    assert last.reason == f"canary weight 0.2: try (overriding failed gates: {FAILED})"


def run_operation_job(operation: str, **op_config: object) -> dg.ExecuteInProcessResult:
    """The default model's `<model>_<operation>_job` with `op_config`, in process, on an
    ephemeral Dagster instance; a failure is returned, not raised."""
    from lifecycle_assets.defs.operations import build_operation_jobs
    from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
    from lifecycle_assets.spec import default_spec

    jobs = build_operation_jobs(default_spec())
    job = next(j for j in jobs if j.name.endswith(f"_{operation}_job"))
    return job.execute_in_process(
        run_config={"ops": {job.graph.node_defs[0].name: {"config": op_config}}},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        resources={"lifecycle": LifecycleResource(), "mlflow": MlflowResource()},
    )  # fmt: skip


def test_canary_job_and_promote_to_canary_apply_the_same_rule(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    v2 = gate_refused_copy(registered_champion, lifecycle_env)
    name = v2.name
    refused = run_operation_job("canary", version=v2.version)
    assert not refused.success
    (failure,) = refused.get_step_failure_events()
    assert f"failed its gates ({FAILED})" in failure.event_specific_data.error.to_string()
    assert resolve(MlflowClient(), name, CANARY) is None

    # Set in MLflow directly, then adopted with `promote --alias canary`: the same rule.
    MlflowClient().set_registered_model_alias(name, CANARY, v2.version)
    adopt = CliRunner().invoke(main, ["promote", name, v2.version, "--alias", CANARY])
    assert adopt.exit_code == 1 and "--override-gates" in adopt.output, adopt.output

    overridden = run_operation_job(
        "canary", version=v2.version, override_gates=True, reason="demo", weight=0.3
    )
    assert overridden.success
    last = Ledger.default().entries(name, CANARY)[-1]
    assert (last.to_version, last.kind) == (v2.version, "move")
    assert last.reason == f"canary weight 0.3: demo (overriding failed gates: {FAILED})"


def test_the_canary_analysis_never_promotes_a_gate_refused_canary(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    """The override let it answer a share of traffic; making it champion is another decision."""
    from lifecycle_assets.defs.assets.canary import apply_verdict
    from lifecycle_assets.ml.canary_analysis import CanaryVerdict, VariantStats
    from lifecycle_assets.registry.canary import set_canary
    from lifecycle_assets.spec import default_spec

    v1 = registered_champion
    v2 = gate_refused_copy(v1, lifecycle_env)
    client = MlflowClient()
    set_canary(client, v2.name, v2.version, 0.1, reason="tried", actor="me")

    def stats(version: str) -> VariantStats:
        return VariantStats(10, (version,), 0.0, 0.5, 1.0, 0, None, None)

    verdict = CanaryVerdict("promote", ("fine",), stats(v1.version), stats(v2.version))
    action = apply_verdict(client, default_spec(), verdict, "run-1", Ledger.default())
    assert action.startswith(f"nothing: canary v{v2.version} failed its gates ({FAILED})"), action
    assert resolve(client, v2.name, config.CHAMPION_ALIAS).version == v1.version
    assert resolve(client, v2.name, CANARY).version == v2.version
