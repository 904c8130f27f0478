"""Typed resources: project settings, a JSON IO manager, and MLflow (registry and runs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from upath import UPath

from lifecycle_assets import storage
from lifecycle_assets.config import Settings
from lifecycle_assets.defs import names

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from lifecycle_assets.registry.tracking import TrainingRun


class LifecycleResource(dg.ConfigurableResource):
    """Where the lake, ledger and reports live; unset fields fall back to the environment.

    The embedded default keeps everything under LIFECYCLE_HOME (`.lifecycle/`). MLflow's
    addresses belong to `MlflowResource`, the one way assets reach MLflow.
    """

    home: str | None = None

    def settings(self) -> Settings:
        base = Settings.from_env()
        overrides: dict[str, Any] = {}
        if self.home:
            overrides["home"] = Path(self.home).resolve()
        return base.replace(**overrides)


class JsonIOManager(dg.ConfigurableIOManager):
    """Stores small asset values (manifests, model references, reports) as JSON, never pickle.

    A partitioned asset keeps one file per partition (`<asset>/<partition>.json`): the
    partition is its data version. Any other asset keeps one file per run
    (`<asset>/<run id>.json`), so two overlapping runs of one model never read each other's
    values: a step reads what its own run produced, and only an asset its run did not
    materialize comes from that asset's latest materialization, or from the run its
    `names.SOURCE_RUN_TAG` tag names. Every file is written aside
    and renamed, so a reader never sees half of one. Values live in the shared storage root (a
    local folder, or object storage in team mode), so a step on another worker reads its inputs
    from there, never from a path on the writer's disk.
    """

    base_dir: str | None = None

    def root(self) -> UPath:
        """The folder every value is stored under: `base_dir`, else `dagster_io` in storage."""
        return storage.path(self.base_dir) if self.base_dir else Settings.from_env().dagster_io_dir

    def value_path(self, key: dg.AssetKey, name: str) -> UPath:
        """Where the value of `key` for one partition, or one run id, is stored: also how a
        process outside the run (`lifecycle run` after a submitted run) reads what it produced."""
        return self.root().joinpath(*key.path) / f"{name}.json"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        name = context.asset_partition_key if context.has_asset_partitions else context.run_id
        path = self.value_path(context.asset_key, name)
        storage.write_json(path, obj, sort_keys=True, default=str)

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
        if step is not None and (source := step.dagster_run.tags.get(names.SOURCE_RUN_TAG)):
            return source  # the run it was asked to read (a version's card: its evaluation)
        latest = context.instance.get_latest_materialization_event(context.asset_key)
        return latest.run_id if latest is not None else None

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_partitions:
            name: str | None = context.asset_partition_key
        else:
            name = self._producing_run(context)
        path = self.value_path(context.asset_key, str(name))
        if name is None or not storage.exists(path):
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has not been materialized yet ({path})"
            )
        return storage.read_json(path)


class MlflowResource(dg.ConfigurableResource):
    """The only way assets reach MLflow: the registry client, and one run per training step.

    Unset fields fall back to the environment (`Settings.from_env`); the code location passes
    `MLFLOW_TRACKING_URI` and `LIFECYCLE_MLFLOW_UI_URL` as `dg.EnvVar`s when they are set, so the
    UI shows where the value comes from. With `ui_url` set, run and model ids in the Dagster UI
    are links into the MLflow UI.
    """

    tracking_uri: str | None = None
    artifact_root: str | None = None
    experiment: str | None = None
    ui_url: str | None = None

    def settings(self) -> Settings:
        base = Settings.from_env()
        overrides: dict[str, Any] = {}
        if self.tracking_uri:
            overrides["mlflow_tracking_uri"] = self.tracking_uri
        if self.artifact_root:
            overrides["mlflow_artifact_root"] = self.artifact_root
        if self.experiment:
            overrides["mlflow_experiment"] = self.experiment
        return base.replace(**overrides)

    def mlflow_ui(self) -> str | None:
        """The MLflow UI's address: `ui_url`, else LIFECYCLE_MLFLOW_UI_URL (environment, .env)."""
        return self.ui_url or self.settings().mlflow_ui_url

    def client(self) -> MlflowClient:
        """A registry client on the configured store, with the experiment created."""
        from lifecycle_assets.registry.tracking import configure_mlflow

        return configure_mlflow(self.settings())

    @contextmanager
    def training_run(
        self, context: dg.AssetExecutionContext, model_name: str, commit: str | None = None
    ) -> Iterator[TrainingRun]:
        """One MLflow run for this training step: FINISHED on return, FAILED on an exception."""
        from lifecycle_assets.registry.tracking import training_run

        with training_run(self.settings(), model_name, context.run_id, commit=commit) as run:
            context.log.info(f"MLflow run {run.run_id} opened for {model_name}")
            yield run

    def log_model_metrics(self, name: str, version: str, metrics: dict[str, float]) -> None:
        """Metrics on the version's run and its LoggedModel (MLflow's model page)."""
        from lifecycle_assets.registry.tracking import log_model_metrics

        log_model_metrics(self.client(), name, version, metrics)

    def run_link(self, run_id: str, experiment_id: str | None = None) -> dg.MetadataValue:
        """The run as a link when an MLflow UI address is configured, else its id."""
        if not self.mlflow_ui():
            return dg.MetadataValue.text(run_id)
        if experiment_id is None:
            experiment_id = self.client().get_run(run_id).info.experiment_id
        base = self.mlflow_ui().rstrip("/")
        return dg.MetadataValue.url(f"{base}/#/experiments/{experiment_id}/runs/{run_id}")

    def artifact_link(self, run_id: str, path: str) -> dg.MetadataValue | None:
        """A run artifact in the MLflow UI, when its address is configured."""
        if not self.mlflow_ui():
            return None
        experiment_id = self.client().get_run(run_id).info.experiment_id
        base = self.mlflow_ui().rstrip("/")
        return dg.MetadataValue.url(
            f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{path}"
        )
