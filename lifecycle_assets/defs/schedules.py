"""Time-based automation: daily ingestion and weekly retraining (both start stopped)."""

from __future__ import annotations

import dagster as dg

from lifecycle_assets.defs.jobs import ingest_job_name, training_job_name
from lifecycle_assets.spec import ModelSpec


def build_schedules(spec: ModelSpec, jobs: list) -> list[dg.ScheduleDefinition]:
    by_name = {job.name: job for job in jobs}
    daily_ingest = dg.build_schedule_from_partitioned_job(
        by_name[ingest_job_name(spec)],
        name=f"{spec.name}_daily_ingest_schedule",
        hour_of_day=1,
        description=f"Ingest yesterday's {spec.name} batch every night.",
    )
    weekly_retrain = dg.ScheduleDefinition(
        name=f"{spec.name}_weekly_retrain_schedule",
        job=by_name[training_job_name(spec)],
        cron_schedule="0 3 * * 1",
        execution_timezone="UTC",
        description=f"Retrain {spec.name} on the latest window every Monday; gates still decide.",
    )
    return [daily_ingest, weekly_retrain]
