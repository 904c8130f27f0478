"""The registered model: a scikit-learn pipeline fit on the training split, tracked in MLflow."""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from lifecycle_assets import config, storage
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.training_set import (
    build_training_set_asset,
    unchanged_champion,
)
from lifecycle_assets.defs.metadata import rounded_metrics
from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
from lifecycle_assets.ml.profile import build_profile
from lifecycle_assets.ml.tasks import task_metrics
from lifecycle_assets.ml.training import fit_pipeline, predict_scores
from lifecycle_assets.registry.gate_record import unmatched_seal
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.same_training import SameTrainingRegistered, same_training
from lifecycle_assets.registry.verdicts import recorded_verdict
from lifecycle_assets.spec import ModelSpec

if TYPE_CHECKING:
    from lifecycle_assets.registry.tracking import TrainingRun

# Rows of the training split scored for the profile's score distribution (see below).
SCORE_PROFILE_ROWS = 200_000


def _fit_and_register(
    training_set: dict[str, Any],
    run: "TrainingRun",
    spec: ModelSpec,
    once: tuple[Ledger, str] | None,
) -> tuple[ModelRef, dict[str, float]]:
    """Fit on the training split, score the validation split, log and register the version."""
    from lifecycle_assets.registry.tracking import track_and_register

    table = storage.read_parquet(training_set["path"])
    train = table.filter(pl.col("split") == "train")
    validation = table.filter(pl.col("split") == "validation")
    pipeline = fit_pipeline(train, spec)
    val_metrics = task_metrics(
        spec.task,
        validation[spec.target].to_numpy(),
        predict_scores(pipeline, validation, spec),
    )
    # The score's reference distribution from a sample: its binned CDF is already within 1/bins
    # of the true one, and a sample of SCORE_PROFILE_ROWS adds at most ~0.004 more (DKW bound,
    # 99.9%); the profile's score `count` records the sample's size.
    scored = (
        train
        if train.height <= SCORE_PROFILE_ROWS
        else train.sample(n=SCORE_PROFILE_ROWS, seed=spec.training.random_seed)
    )
    profile = build_profile(
        train,
        predict_scores(pipeline, scored, spec),
        spec.numeric_features,
        spec.categorical_features,
    )
    ref = track_and_register(
        pipeline,
        table,
        training_set,
        val_metrics,
        spec,
        run.dagster_run_id,
        profile.to_dict(),
        commit=run.commit,
        once=once,
    )
    return ref, val_metrics


def _held_by(
    context: dg.AssetExecutionContext, same: SameTrainingRegistered, **metadata: Any
) -> dg.AssetObservation:
    """What a training whose very training (same data, spec and code) a version already holds
    records: that version, whose evaluation, gates and card stand for it, so nothing downstream
    runs again (`lifecycle run` reports the line under SAME_TRAINING_METADATA_KEY)."""
    context.log.info(str(same))
    return dg.AssetObservation(
        asset_key=context.asset_key,
        metadata={
            names.SAME_TRAINING_METADATA_KEY: str(same),
            "model_version": same.ref.version,
            **metadata,
        },
    )


def _version_output(ref: ModelRef, **metadata: Any) -> dg.Output[dict[str, Any]]:
    """The registered version as the asset's value; its artifact's SHA-256 is the data version."""
    return dg.Output(
        ref.to_dict(),
        data_version=dg.DataVersion(ref.artifact_sha256),
        metadata={
            "model_name": ref.name,
            "model_version": ref.version,
            "artifact_sha256": ref.artifact_sha256,
            **metadata,
        },
    )


def _evaluated_again(
    context: dg.AssetExecutionContext, held: ModelRef, why: str
) -> dg.Output[dict[str, Any]]:
    """The version that holds this training, handed to its evaluation again: its sealed verdict
    matches no file (`registry/verdicts.py`), so its gates, refused until then, are judged anew
    and the file that matches a new seal is written. This is how a run killed mid-evaluation
    is reconciled by the next run of the same training."""
    context.log.warning(f"v{held.version} already holds this training; evaluated again: {why}")
    return _version_output(held, evaluated_again=why)


def _still_evaluating(
    context: dg.AssetExecutionContext, ledger: Ledger, held: ModelRef
) -> str | None:
    """Another Dagster run that may still be evaluating `held`, if one has not ended: the run
    that registered it, or the one whose seal has no file yet. While it runs, a missing or
    unmatched file is its work in progress, not what a crash left: evaluating again now would
    race it (two identical trainings at once). A killed run is ended by reconcile first."""
    seal = recorded_verdict(ledger, held.name, held.version)
    runs = {held.tags.get(config.TAG_DAGSTER_RUN_ID), seal.dagster_run_id if seal else None}
    for run_id in sorted(runs - {None, "", context.run_id}):
        run = context.instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            return run_id
    return None


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
        output_required=False,
        description="A scikit-learn pipeline fit on the training split, registered in MLflow.",
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        mlflow: MlflowResource,
        lifecycle: LifecycleResource,
        training_set: dict[str, Any],
    ) -> Iterator[dg.Output[dict[str, Any]] | dg.AssetObservation]:
        from lifecycle_assets.registry.tracking import git_commit, training_key_of

        client = mlflow.client()
        if (same := unchanged_champion(client, spec, training_set)) is not None:
            # Nothing changed: no new version, no MLflow run, nothing downstream runs (README).
            context.log.info(
                f"nothing changed: training set {training_set['digest'][:12]} is champion "
                f"v{same.version}'s; no new version"
            )
            return
        # One look at the tree (`git status`, `git diff HEAD`) per training: the key looked up
        # now is the one registered, and the run is tagged with the same commit.
        commit = git_commit()
        key = training_key_of(training_set, commit)
        settings = lifecycle.settings()
        ledger = Ledger.for_settings(settings)
        once = None if key is None else (ledger, key)
        if key is not None and (held := same_training(client, spec.name, key)) is not None:
            why = unmatched_seal(settings, ledger, spec.name, held.version)
            if why and (busy := _still_evaluating(context, ledger, held)) is not None:
                context.log.info(f"v{held.version}'s evaluation is Dagster run {busy}'s, not done")
            elif why:
                yield _evaluated_again(context, held, why)
                return
            # Known before the fit: no fit, no MLflow run (it would hold no model, params or
            # metrics of its own); the observation names the version and the run that hold it.
            yield _held_by(
                context,
                SameTrainingRegistered(held),
                fit="skipped: the training key was found before fitting",
                training_key=key,
            )
            return
        # The whole step is the MLflow run: a failure anywhere in it ends the run FAILED.
        with mlflow.training_run(context, spec.name, commit) as run:
            try:
                ref, val_metrics = _fit_and_register(training_set, run, spec, once)
            except SameTrainingRegistered as same:
                # Another run registered it while this one was fitting (both looked before
                # either registered): the registry's check under the model's lock caught it.
                yield _held_by(
                    context,
                    same,
                    fit="done: another run registered it during the fit (found under the lock)",
                    mlflow_run_id=run.run_id,
                )
                return
            name = run.name_after(ref.version)
        if spec_sha := training_set.get("model_spec_sha256"):
            client.set_model_version_tag(ref.name, ref.version, config.TAG_MODEL_SPEC, spec_sha)
        context.log.info(f"registered {ref.name} v{ref.version} (MLflow run {name})")
        yield _version_output(
            ref,
            mlflow_run=mlflow.run_link(run.run_id, run.experiment_id),
            mlflow_run_id=run.run_id,
            training_set_digest=training_set["digest"],
            git_commit=ref.tags[config.TAG_GIT_COMMIT],
            **rounded_metrics(val_metrics, prefix="validation_"),
        )

    return [training_set, trained_model]
