"""Automated canary analysis: the verdict on synthetic logs, and the asset acting on it."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import numpy as np
import polars as pl
import pytest
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.config import CanaryThresholds, Settings
from lifecycle_assets.data.lake import PREDICTION_LOGS, Lake
from lifecycle_assets.defs.assets.canary import build_canary_assets
from lifecycle_assets.defs.resources import JsonIOManager, LifecycleResource, MlflowResource
from lifecycle_assets.ml.canary_analysis import analyze_canary
from lifecycle_assets.registry.canary import set_canary
from lifecycle_assets.registry.ledger import history
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_ledger import fitted_pipeline, register_versions  # noqa: F401


def synthetic_log(n: int, *, canary_shift: float = 0.0, canary_noise: float = 0.0) -> pl.DataFrame:
    """`n` champion and `n` canary rows with labels; the canary's scores optionally worse."""
    rng = np.random.default_rng(7)
    frames = []
    for variant, version in (("champion", "1"), ("canary", "2")):
        labels = rng.integers(0, 2, n)
        scores = np.clip(0.3 + 0.4 * labels + rng.normal(0, 0.15, n), 0, 1)
        if variant == "canary":
            flipped = rng.random(n) < canary_noise
            scores = np.where(flipped, 1 - scores, scores)
            scores = np.clip(scores + canary_shift, 0, 1)
        frames.append(
            pl.DataFrame(
                {
                    "prediction_id": [f"{variant}-{i}" for i in range(n)],
                    "variant": variant,
                    "model_version": version,
                    "score": scores,
                    "label": labels.astype(np.int8),
                }
            )
        )
    return pl.concat(frames)


def test_similar_canary_with_good_labels_is_promoted() -> None:
    verdict = analyze_canary(synthetic_log(2000))
    assert verdict.decision == "promote", verdict.reasons
    assert verdict.canary_version == "2" and verdict.score_psi < 0.2
    assert verdict.canary.roc_auc > 0.9 and verdict.champion.labelled_rows == 2000


def test_shifted_scores_roll_back() -> None:
    verdict = analyze_canary(synthetic_log(2000, canary_shift=0.2))
    assert verdict.decision == "rollback"
    assert any("PSI" in reason for reason in verdict.reasons)
    assert any("mean score shift" in reason for reason in verdict.reasons)


def test_worse_auc_rolls_back() -> None:
    verdict = analyze_canary(synthetic_log(2000, canary_noise=0.3))
    assert verdict.decision == "rollback"
    assert any("ROC AUC" in reason for reason in verdict.reasons)


def test_failed_rows_roll_back() -> None:
    log = synthetic_log(2000).with_columns(
        failed=(pl.col("variant") == "canary") & (pl.int_range(pl.len()) % 10 == 0)
    )
    verdict = analyze_canary(log)
    assert verdict.decision == "rollback" and verdict.canary.error_rate > 0.05


def test_too_few_rows_or_no_labels_wait() -> None:
    assert analyze_canary(synthetic_log(50)).decision == "wait"
    assert analyze_canary(pl.DataFrame({"prediction_id": []})).decision == "wait"
    unlabelled = synthetic_log(2000).with_columns(label=pl.lit(None, pl.Int8))
    verdict = analyze_canary(unlabelled)
    assert verdict.decision == "wait" and "labels" in verdict.reasons[0]
    relaxed = CanaryThresholds(require_labels=False)
    assert analyze_canary(unlabelled, relaxed).decision == "promote"


def materialize_day(spec: ModelSpec, settings: Settings, log: pl.DataFrame) -> dict:
    day = dt.date.today().isoformat()
    Lake(settings.lake_dir, settings.quarantine_dir, spec.name).store_daily(
        PREDICTION_LOGS, day, log
    )
    result = dg.materialize(
        build_canary_assets(spec),
        partition_key=day,
        resources={
            "lifecycle": LifecycleResource(),
            "mlflow": MlflowResource(),
            "json_io_manager": JsonIOManager(base_dir=str(settings.home / "io")),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return result.output_for_node(f"{spec.name}__canary_analysis")


def test_asset_promotes_then_rolls_back(
    lifecycle_env: Settings,
    spec: ModelSpec,
    fitted_pipeline: Pipeline,  # noqa: F811
    small_feature_table: pl.DataFrame,
) -> None:
    v1, v2, v3 = register_versions(3, spec, fitted_pipeline, small_feature_table)
    client = configure_mlflow(lifecycle_env)
    set_canary(client, spec.name, v2, 0.2, reason="try", actor="pytest")

    good = synthetic_log(2000).with_columns(
        model_version=pl.when(pl.col("variant") == "canary").then(pl.lit(v2)).otherwise(pl.lit(v1))
    )
    output = materialize_day(spec, lifecycle_env, good)
    assert output["decision"] == "promote"
    assert resolve(client, spec.name, config.CHAMPION_ALIAS).version == v2
    assert resolve(client, spec.name, config.CANARY_ALIAS) is None
    last = history(spec.name, config.CHAMPION_ALIAS)[-1]
    assert last.to_version == v2 and "canary analysis" in last.reason
    assert last.actor.startswith("dagster:")

    set_canary(client, spec.name, v3, 0.2, reason="try again", actor="pytest")
    bad = synthetic_log(2000, canary_shift=0.25).with_columns(
        model_version=pl.when(pl.col("variant") == "canary").then(pl.lit(v3)).otherwise(pl.lit(v2))
    )
    output = materialize_day(spec, lifecycle_env, bad)
    assert output["decision"] == "rollback"
    assert resolve(client, spec.name, config.CHAMPION_ALIAS).version == v2
    assert resolve(client, spec.name, config.CANARY_ALIAS) is None
    removed = history(spec.name, config.CANARY_ALIAS)[-1]
    assert removed.from_version == v3 and removed.to_version is None
    assert "rolled back" in removed.reason and "PSI" in removed.reason


def test_regressor_canary_is_judged_on_its_labels_as_they_arrived(tmp_path) -> None:
    """Loss amounts join as the numbers they are: MAE recomputed here from the raw rows."""
    from lifecycle_assets.data.ground_truth import GROUND_TRUTH
    from lifecycle_assets.defs.assets.canary import day_with_labels

    rng = np.random.default_rng(11)
    n, day = 400, "2026-11-02"
    losses = np.round(rng.gamma(2.0, 1500.0, 2 * n), 2)  # money: far above any int8
    scores = losses + rng.normal(0, 300.0, 2 * n)
    scores[n:] += 40.0  # the canary's bias
    ids = [f"p-{i}" for i in range(2 * n)]
    log = pl.DataFrame(
        {
            "prediction_id": ids,
            "variant": ["champion"] * n + ["canary"] * n,
            "model_version": ["1"] * n + ["2"] * n,
            "score": scores,
        }
    )
    at = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    labels = pl.DataFrame({"prediction_id": ids, "label": losses, "labelled_at": [at] * (2 * n)})
    lake = Lake(tmp_path / "lake", tmp_path / "quarantine", "expected_loss")
    lake.store_daily(PREDICTION_LOGS, day, log)
    lake.store_daily(GROUND_TRUTH, "2026-11-03", labels)

    verdict = analyze_canary(day_with_labels(lake, day), CanaryThresholds(), "regression")
    for stats, rows in ((verdict.champion, slice(0, n)), (verdict.canary, slice(n, 2 * n))):
        assert stats.labelled_rows == n
        assert stats.mae == pytest.approx(np.mean(np.abs(losses[rows] - scores[rows])))


def test_rows_without_scores_give_no_score_distance() -> None:
    """Canary rows that carry no score: wait (or roll back on errors), never a PSI of nothing."""
    log = synthetic_log(2000).with_columns(
        score=pl.when(pl.col("variant") == "canary").then(None).otherwise(pl.col("score"))
    )
    verdict = analyze_canary(log)
    assert verdict.decision == "wait" and verdict.score_psi is None
    assert "0 canary" in verdict.reasons[0]
    failing = log.with_columns(failed=pl.col("variant") == "canary")
    verdict = analyze_canary(failing)
    assert verdict.decision == "rollback" and "error rate" in verdict.reasons[0]


def test_a_label_stamped_before_its_prediction_does_not_judge_the_canary(tmp_path) -> None:
    """A label from a user's file stamped before the prediction it names could not have been
    known: it is set aside and flagged, never scored in the verdict."""
    from lifecycle_assets.data.ground_truth import GROUND_TRUTH, PREMATURE
    from lifecycle_assets.defs.assets.canary import day_with_labels

    n, day = 50, "2026-11-02"
    at = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)
    ids = [f"p-{i}" for i in range(2 * n)]
    log = pl.DataFrame(
        {
            "prediction_id": ids,
            "variant": ["champion"] * n + ["canary"] * n,
            "model_version": ["1"] * n + ["2"] * n,
            "score": [0.3] * (2 * n),
            "predicted_at": [at] * (2 * n),
        }
    )
    # The canary's first 10 labels are stamped an hour before their predictions.
    stamps = [at + dt.timedelta(days=1)] * (2 * n)
    stamps[n : n + 10] = [at - dt.timedelta(hours=1)] * 10
    labels = pl.DataFrame({"prediction_id": ids, "label": [0.0] * (2 * n), "labelled_at": stamps})
    lake = Lake(tmp_path / "lake", tmp_path / "quarantine", "credit_default")
    lake.store_daily(PREDICTION_LOGS, day, log)
    lake.store_daily(GROUND_TRUTH, "2026-11-03", labels)

    joined = day_with_labels(lake, day)
    assert joined[PREMATURE].sum() == 10 and joined["label"].null_count() == 10
    verdict = analyze_canary(joined, CanaryThresholds())
    assert (verdict.champion.labelled_rows, verdict.canary.labelled_rows) == (n, n - 10)
