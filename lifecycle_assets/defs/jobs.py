"""Jobs of one model. All run in-process: each step is cheap work, and the multiprocess
executor would spend about 2 s per step starting processes."""

from __future__ import annotations

import dagster as dg

from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.monitoring import serving_partitions
from lifecycle_assets.defs.executors import in_process_steps, step_executor
from lifecycle_assets.spec import ModelSpec

TRAINING_ASSETS = (
    names.TRAINING_SET,
    names.TRAINED_MODEL,
    names.EVALUATION_REPORT,
    names.CHAMPION_MODEL,
    names.BENTO_SERVICE,
)


def ingest_job_name(spec: ModelSpec) -> str:
    return f"{spec.name}_ingest_job"


def training_job_name(spec: ModelSpec) -> str:
    return f"{spec.name}_training_job"


MONITORING_ASSETS = (
    names.PREDICTION_LOG,
    names.DRIFT_REPORT,
    names.GROUND_TRUTH,
    names.LIVE_PERFORMANCE,
)


def model_card_job_name(spec: ModelSpec) -> str:
    return f"{spec.name}_model_card_job"


def monitoring_job_name(spec: ModelSpec) -> str:
    return f"{spec.name}_monitoring_job"


def live_performance_job_name(spec: ModelSpec) -> str:
    return f"{spec.name}_live_performance_job"


def build_jobs(spec: ModelSpec, partitions: dg.PartitionsDefinition) -> list:
    steps = step_executor()  # in-process, or Celery workers in team mode
    ingest = dg.define_asset_job(
        ingest_job_name(spec),
        selection=dg.AssetSelection.assets(
            names.key(spec.name, names.RAW_BATCHES), names.key(spec.name, names.FEATURES)
        ),
        partitions_def=partitions,
        executor_def=in_process_steps,
        description=f"Ingest, validate and featurize one day of {spec.name} data.",
    )
    training = dg.define_asset_job(
        training_job_name(spec),
        selection=dg.AssetSelection.assets(*(names.key(spec.name, a) for a in TRAINING_ASSETS)),
        executor_def=steps,
        description=f"Train, evaluate, gate, promote and package {spec.name}.",
    )
    monitoring = dg.define_asset_job(
        monitoring_job_name(spec),
        selection=dg.AssetSelection.assets(*(names.key(spec.name, a) for a in MONITORING_ASSETS)),
        partitions_def=serving_partitions(spec),
        executor_def=steps,
        description=f"Collect a day of {spec.name} predictions, judge their drift, and "
        "score them against the labels received.",
    )
    live_performance = dg.define_asset_job(
        live_performance_job_name(spec),
        selection=dg.AssetSelection.assets(names.key(spec.name, names.LIVE_PERFORMANCE)),
        partitions_def=serving_partitions(spec),
        executor_def=in_process_steps,
        description=f"Re-score past days of {spec.name} predictions as late labels arrive.",
    )
    # Outside the training job on purpose: a failed blocking gate skips everything downstream
    # of the evaluation in that run, and a rejected version needs its card most of all.
    model_card = dg.define_asset_job(
        model_card_job_name(spec),
        selection=dg.AssetSelection.assets(names.key(spec.name, names.MODEL_CARD)),
        executor_def=in_process_steps,
        description=f"Write the model card of the last evaluated {spec.name} version.",
    )
    return [ingest, training, monitoring, live_performance, model_card]
