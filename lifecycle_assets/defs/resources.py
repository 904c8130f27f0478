"""Typed resources: project settings, a JSON IO manager, and dagster-mlflow's tracking run."""

from pathlib import Path
from typing import Any

import dagster as dg
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow
from upath import UPath

from lifecycle_assets import storage
from lifecycle_assets.config import Settings
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
        return base.replace(**overrides)


class JsonIOManager(dg.ConfigurableIOManager):
    """Stores small asset values (manifests, model references, reports) as JSON, never pickle.

    Values live in the shared storage root (a local folder, or object storage in team mode), so
    a step on another worker reads its inputs from there, never from a path on the writer's disk.
    """

    base_dir: str | None = None

    def root(self) -> UPath:
        """The folder every value is stored under: `base_dir`, else `dagster_io` in storage."""
        return storage.path(self.base_dir) if self.base_dir else Settings.from_env().dagster_io_dir

    def _path(self, context: dg.OutputContext | dg.InputContext) -> UPath:
        path = self.root().joinpath(*context.asset_key.path)
        if context.has_asset_partitions:
            path = path / context.asset_partition_key
        return path.with_suffix(".json")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        storage.write_json(self._path(context), obj, sort_keys=True, default=str)

    def load_input(self, context: dg.InputContext) -> Any:
        path = self._path(context)
        if not storage.exists(path):
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has not been materialized yet ({path})"
            )
        return storage.read_json(path)


@dg.resource(config_schema=CONFIG_SCHEMA)
def mlflow_tracking_run(init_context: dg.InitResourceContext) -> MlFlow:
    """dagster-mlflow's run-per-Dagster-run resource, on our store and experiment.

    The experiment is created first with an explicit artifact location: left to MLflow, a
    SQLite store would put artifacts in `./mlruns` of whatever folder the process runs in.
    """
    settings = Settings.from_env().replace(
        mlflow_experiment=init_context.resource_config["experiment_name"]
    )
    configure_mlflow(settings)
    return MlFlow(init_context)
