"""Typed resources: project settings, a JSON IO manager, and dagster-mlflow's tracking run."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow

from lifecycle_assets.config import Settings
from lifecycle_assets.data.lake import write_atomic
from lifecycle_assets.registry.tracking import configure_mlflow


class LifecycleResource(dg.ConfigurableResource):
    """Where the lake, registry and reports live; unset fields fall back to the environment.

    The embedded default keeps everything under LIFECYCLE_HOME (`.lifecycle/`); a team moves to
    shared servers by setting MLFLOW_TRACKING_URI and LIFECYCLE_MLFLOW_ARTIFACT_ROOT.
    """

    home: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None

    def settings(self) -> Settings:
        base = Settings.from_env()
        overrides: dict[str, Any] = {}
        if self.home:
            overrides["home"] = Path(self.home).resolve()
        if self.mlflow_tracking_uri:
            overrides["mlflow_tracking_uri"] = self.mlflow_tracking_uri
        if self.mlflow_artifact_root:
            overrides["mlflow_artifact_root"] = self.mlflow_artifact_root
        return dataclasses.replace(base, **overrides)


class JsonIOManager(dg.ConfigurableIOManager):
    """Stores small asset values (manifests, model references, reports) as JSON, never pickle.

    A partitioned asset keeps one file per partition (`<asset>/<partition>.json`): the
    partition is its data version. Any other asset keeps one file per run
    (`<asset>/<run id>.json`), so two overlapping runs of one model never read each other's
    values: a step reads what its own run produced, and only an asset its run did not
    materialize comes from that asset's latest materialization. Every file is written aside
    and renamed, so a reader never sees half of one.
    """

    base_dir: str | None = None

    def root(self) -> Path:
        """The folder every value is stored under: `base_dir`, else `dagster_io` in the home."""
        return Path(self.base_dir) if self.base_dir else Settings.from_env().home / "dagster_io"

    def _asset_dir(self, key: dg.AssetKey) -> Path:
        return self.root().joinpath(*key.path)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        folder = self._asset_dir(context.asset_key)
        name = context.asset_partition_key if context.has_asset_partitions else context.run_id
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        write_atomic(folder / f"{name}.json", data)

    def _producing_run(self, context: dg.InputContext) -> str | None:
        """The run whose value this input reads: this run's when it computes the asset."""
        upstream = context.upstream_output
        try:
            step = context.step_context
        except dg.DagsterInvariantViolationError:
            step = None  # a context built outside a run (direct invocation)
        if (
            step is not None
            and upstream is not None
            and upstream.step_key in step.execution_plan.step_keys_to_execute
        ):
            return step.run_id
        latest = context.instance.get_latest_materialization_event(context.asset_key)
        return latest.run_id if latest is not None else None

    def load_input(self, context: dg.InputContext) -> Any:
        folder = self._asset_dir(context.asset_key)
        if context.has_asset_partitions:
            name: str | None = context.asset_partition_key
        else:
            name = self._producing_run(context)
        path = folder / f"{name}.json"
        if name is None or not path.exists():
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has not been materialized yet ({path})"
            )
        return json.loads(path.read_text())


@dg.resource(config_schema=CONFIG_SCHEMA)
def mlflow_tracking_run(init_context: dg.InitResourceContext) -> MlFlow:
    """dagster-mlflow's run-per-Dagster-run resource, on our store and experiment.

    The experiment is created first with an explicit artifact location: left to MLflow, a
    SQLite store would put artifacts in `./mlruns` of whatever folder the process runs in.
    """
    settings = dataclasses.replace(
        Settings.from_env(), mlflow_experiment=init_context.resource_config["experiment_name"]
    )
    configure_mlflow(settings)
    return MlFlow(init_context)
