"""The code location's one entry point: a graph per model spec plus the shared resources.

Specs come from LIFECYCLE_SPECS (a comma-separated list of spec files), defaulting to the two
built-in specs on the simulator (`spec.configured_specs`). Loading is deferred to
`@dg.definitions`, so importing this module does no I/O.
"""

import os

import dagster as dg

from lifecycle_assets.defs.assets.portfolio import build_portfolio_defs
from lifecycle_assets.defs.executors import owned
from lifecycle_assets.defs.factory import build_model_defs
from lifecycle_assets.defs.recovery_sensor import recovery_sensor
from lifecycle_assets.defs.resources import JsonIOManager, LifecycleResource, MlflowResource
from lifecycle_assets.spec import ModelSpec, configured_specs


def _env(name: str) -> dg.EnvVar | None:
    """`dg.EnvVar(name)` when the variable is set: read in the run, and shown by name in the UI.
    Unset, the resource falls back to the project default (a store under LIFECYCLE_HOME)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def mlflow_resource() -> MlflowResource:
    return MlflowResource(
        tracking_uri=_env("MLFLOW_TRACKING_URI"),
        artifact_root=_env("LIFECYCLE_MLFLOW_ARTIFACT_ROOT"),
        experiment=_env("LIFECYCLE_MLFLOW_EXPERIMENT"),
        ui_url=_env("LIFECYCLE_MLFLOW_UI_URL"),
    )


def build_definitions(specs: list[ModelSpec]) -> dg.Definitions:
    resources = dg.Definitions(
        resources={
            "lifecycle": LifecycleResource(),
            "json_io_manager": JsonIOManager(),
            "mlflow": mlflow_resource(),
        },
        sensors=[recovery_sensor],
        # Dagster's default for the jobs that name none (a materialization from the UI),
        # tagging each run's owner like the project's own jobs.
        executor=owned(dg.multi_or_in_process_executor),
    )
    return dg.Definitions.merge(
        resources, *(build_model_defs(spec) for spec in specs), build_portfolio_defs(specs)
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(configured_specs())
