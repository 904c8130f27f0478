"""Asset and check names, defined once so assets, checks, jobs, the CLI and tests agree."""

from __future__ import annotations

import dagster as dg

RAW_BATCHES = "raw_batches"
FEATURES = "features"
TRAINING_SET = "training_set"
TRAINED_MODEL = "trained_model"
EVALUATION_REPORT = "evaluation_report"
CHAMPION_MODEL = "champion_model"
BENTO_SERVICE = "bento_service"
PREDICTION_LOG = "prediction_log"
DRIFT_REPORT = "drift_report"
GROUND_TRUTH = "ground_truth"
LIVE_PERFORMANCE = "live_performance"
MODEL_CARD = "model_card"
CANARY_ANALYSIS = "canary_analysis"

RAW_SCHEMA_CHECK = "raw_batch_matches_schema"
FEATURE_SCHEMA_CHECK = "features_match_schema"
PARITY_CHECK = "train_serve_parity"
DRIFT_CHECK = "no_data_drift"

# Metadata key of a step failure that is a verdict, not an error (`champion_model` refused by
# rule, e.g. the champion moved while the run was judged): `lifecycle run` exits 3, not 1.
REFUSED_METADATA_KEY = "refused"
# How such a refusal's message starts; the run summary says "not promoted" once, itself.
REFUSAL_PREFIX = "not promoted: "
# On the trained model's observation when another run had already registered this very
# training: its value is the one line `lifecycle run` reports (`registry.same_training`).
SAME_TRAINING_METADATA_KEY = "same_training"
# Run tag naming the run whose values a run's inputs read (a model card run: the training run
# that evaluated the version), instead of each input's latest materialization, which another
# model version's run may have replaced meanwhile.
SOURCE_RUN_TAG = "lifecycle/source_run"


def key(model_name: str, asset_name: str) -> dg.AssetKey:
    """Every model's assets live under its own prefix, so several models never collide."""
    return dg.AssetKey([model_name, asset_name])


def training_pool(model_name: str) -> str:
    """The Dagster concurrency pool of a model's training steps (limit 1 in dagster.yaml), so
    overlapping training runs of one model (a schedule, a sensor, a manual run) take turns."""
    return f"{model_name}_training"
