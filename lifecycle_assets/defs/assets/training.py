"""The registered model: a scikit-learn pipeline fit on the training split, tracked in MLflow."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import mlflow
import polars as pl

from lifecycle_assets import config
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.training_set import (
    build_training_set_asset,
    unchanged_champion,
)
from lifecycle_assets.ml.profile import build_profile
from lifecycle_assets.ml.tasks import task_metrics
from lifecycle_assets.ml.training import (
    fit_pipeline,
    predict_scores,
)
from lifecycle_assets.registry.tracking import configure_mlflow, track_and_register
from lifecycle_assets.spec import ModelSpec


def build_training_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    """The training set snapshot and the trained model of one model."""
    training_set = build_training_set_asset(spec)

    @dg.asset(
        key=names.key(spec.name, names.TRAINED_MODEL),
        ins={"training_set": dg.AssetIn(names.key(spec.name, names.TRAINING_SET))},
        group_name=spec.name,
        pool=names.training_pool(spec.name),
        kinds={"scikit-learn", "mlflow"},
        io_manager_key="json_io_manager",
        required_resource_keys={"mlflow", "lifecycle"},
        output_required=False,
        description="A scikit-learn pipeline fit on the training split, registered in MLflow.",
    )
    def trained_model(
        context: dg.AssetExecutionContext, training_set: dict[str, Any]
    ) -> Iterator[dg.Output[dict[str, Any]]]:
        client = configure_mlflow(context.resources.lifecycle.settings())
        if (same := unchanged_champion(client, spec, training_set)) is not None:
            # Nothing changed: no new version, nothing downstream runs (see README).
            context.log.info(
                f"nothing changed: training set {training_set['digest'][:12]} is champion "
                f"v{same.version}'s; no new version"
            )
            # The Dagster run's MLflow run was opened for a model that is not trained: drop it.
            unused = mlflow.active_run()
            context.resources.mlflow.end_run()
            if unused is not None:
                client.delete_run(unused.info.run_id)
            return
        table = pl.read_parquet(training_set["path"])
        train = table.filter(pl.col("split") == "train")
        validation = table.filter(pl.col("split") == "validation")
        pipeline = fit_pipeline(train, spec)
        val_metrics = task_metrics(
            spec.task,
            validation[spec.target].to_numpy(),
            predict_scores(pipeline, validation, spec),
        )
        mlf = context.resources.mlflow
        run_id = mlflow.active_run().info.run_id
        profile = build_profile(
            train,
            predict_scores(pipeline, train, spec),
            spec.numeric_features,
            spec.categorical_features,
        )
        try:
            ref = track_and_register(
                pipeline, table, training_set, val_metrics, spec, context.run_id, profile.to_dict()
            )
        except BaseException:
            mlf.end_run(status="FAILED")  # then re-raised: the Dagster step fails too
            raise
        mlf.end_run()
        if spec_sha := training_set.get("model_spec_sha256"):
            client.set_model_version_tag(ref.name, ref.version, config.TAG_MODEL_SPEC, spec_sha)
        context.log.info(f"registered {ref.name} v{ref.version} (run {run_id})")
        yield dg.Output(
            ref.to_dict(),
            data_version=dg.DataVersion(ref.artifact_sha256),
            metadata={
                "model_name": ref.name,
                "model_version": ref.version,
                "mlflow_run_id": run_id,
                "artifact_sha256": ref.artifact_sha256,
                "training_set_digest": training_set["digest"],
                "git_commit": ref.tags[config.TAG_GIT_COMMIT],
                **{f"validation_{k}": float(v) for k, v in val_metrics.items() if k != "n"},
            },
        )

    return [training_set, trained_model]
