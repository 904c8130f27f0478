"""The registered model: a scikit-learn pipeline fit on the training split, tracked in MLflow."""

from typing import Any

import dagster as dg
import mlflow
import polars as pl

from lifecycle_assets import config, storage
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.training_set import build_training_set_asset
from lifecycle_assets.ml.profile import build_profile
from lifecycle_assets.ml.tasks import task_metrics
from lifecycle_assets.ml.training import (
    fit_pipeline,
    predict_scores,
)
from lifecycle_assets.registry.tracking import track_and_register
from lifecycle_assets.spec import ModelSpec


def build_training_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    """The training set snapshot and the trained model of one model."""
    training_set = build_training_set_asset(spec)

    @dg.asset(
        key=names.key(spec.name, names.TRAINED_MODEL),
        ins={"training_set": dg.AssetIn(names.key(spec.name, names.TRAINING_SET))},
        group_name=spec.name,
        kinds={"scikit-learn", "mlflow"},
        io_manager_key="json_io_manager",
        required_resource_keys={"mlflow"},
        description="A scikit-learn pipeline fit on the training split, registered in MLflow.",
    )
    def trained_model(
        context: dg.AssetExecutionContext, training_set: dict[str, Any]
    ) -> dg.Output[dict[str, Any]]:
        table = storage.read_parquet(training_set["path"])
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
        context.log.info(f"registered {ref.name} v{ref.version} (run {run_id})")
        return dg.Output(
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
