"""Materializing `champion_model` alone (the UI's "Materialize selected", `dagster asset
materialize --select`) never promotes a version its own evaluation refused.

The blocking checks run only in the run that evaluates; a later run of `champion_model` alone
loads the newest evaluation and re-judges it with the code location's spec. A version trained
and refused under a stricter spec (`lifecycle run --spec strict.yaml`) was promoted that way,
its ledger entry reading "passed gates". Real Dagster instance, MLflow registry and ledger.
"""

import pytest
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.ml import gates
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets_tests.test_lifecycle_e2e import _run, _small

pytestmark = pytest.mark.e2e


def test_champion_model_alone_keeps_the_verdict_of_the_evaluation(spec, lifecycle_env) -> None:
    small = _small(spec)
    strict = small.model_copy(update={"gates": {"min_roc_auc": 0.99}})
    summary, instance = _run(strict)
    assert summary.model_version == "1" and not summary.promoted
    assert gates.AUC_GATE in {g["name"] for g in summary.gates if not g["passed"]}

    # The project's own spec (min_roc_auc 0.7) in the UI: champion_model selected alone.
    defs = build_definitions([small])
    job = defs.resolve_implicit_global_asset_job_def()
    key = names.key(spec.name, names.CHAMPION_MODEL)
    result = job.execute_in_process(instance=instance, asset_selection=[key], raise_on_error=False)

    assert not result.success
    assert resolve(MlflowClient(), spec.name, config.CHAMPION_ALIAS) is None
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert f"{gates.AUC_GATE}: " in message and "(as evaluated)" in message
