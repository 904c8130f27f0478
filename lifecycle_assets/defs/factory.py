"""One factory turns a model spec into its asset graph, checks, jobs, schedules and sensors."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from lifecycle_assets.defs.assets.canary import build_canary_assets
from lifecycle_assets.defs.assets.data import build_data_assets
from lifecycle_assets.defs.assets.deployment import build_deployment_assets
from lifecycle_assets.defs.assets.drift import build_drift_assets
from lifecycle_assets.defs.assets.evaluation import build_evaluation_asset
from lifecycle_assets.defs.assets.labels import build_label_assets
from lifecycle_assets.defs.assets.model_card import build_model_card_asset
from lifecycle_assets.defs.assets.monitoring import build_monitoring_assets
from lifecycle_assets.defs.assets.training import build_training_assets
from lifecycle_assets.defs.automation import automation_sensor
from lifecycle_assets.defs.checks import build_data_checks, build_model_checks
from lifecycle_assets.defs.jobs import build_jobs
from lifecycle_assets.defs.operations import build_operation_jobs
from lifecycle_assets.defs.schedules import build_schedules
from lifecycle_assets.defs.sensors import build_sensors
from lifecycle_assets.spec import ModelSpec


def daily_partitions(spec: ModelSpec) -> dg.DailyPartitionsDefinition:
    """One partition per day from the spec's start date to its (inclusive) end date."""
    end = spec.end_date + dt.timedelta(days=1) if spec.end_date else None
    return dg.DailyPartitionsDefinition(
        start_date=spec.start_date.isoformat(),
        end_date=end.isoformat() if end else None,
        timezone="UTC",
    )


def build_model_defs(spec: ModelSpec) -> dg.Definitions:
    partitions = daily_partitions(spec)
    jobs = build_jobs(spec, partitions)
    drift_report, drift_check = build_drift_assets(spec)
    return dg.Definitions(
        assets=[
            *build_data_assets(spec, partitions),
            *build_training_assets(spec),
            build_evaluation_asset(spec),
            build_model_card_asset(spec),
            *build_deployment_assets(spec),
            *build_monitoring_assets(spec),
            drift_report,
            *build_label_assets(spec),
            *build_canary_assets(spec),
        ],
        asset_checks=[
            *build_data_checks(spec, partitions),
            *build_model_checks(spec),
            drift_check,
        ],
        jobs=[*jobs, *build_operation_jobs(spec)],
        schedules=build_schedules(spec, jobs),
        sensors=[
            *build_sensors(spec, jobs),
            automation_sensor(spec),
        ],
    )
