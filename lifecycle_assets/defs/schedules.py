"""Time-based automation: daily ingestion and monitoring, weekly retraining (all start stopped).

When each runs is the spec's `schedules:` section, so models of one project can retrain on
different days.
"""

import datetime as dt

import dagster as dg

from lifecycle_assets import config
from lifecycle_assets.defs.jobs import (
    ingest_job_name,
    live_performance_job_name,
    monitoring_job_name,
    training_job_name,
)
from lifecycle_assets.spec import ModelSpec


def build_schedules(spec: ModelSpec, jobs: list) -> list[dg.ScheduleDefinition]:
    by_name = {job.name: job for job in jobs}
    daily_ingest = dg.build_schedule_from_partitioned_job(
        by_name[ingest_job_name(spec)],
        name=f"{spec.name}_daily_ingest_schedule",
        hour_of_day=spec.schedules.ingest_hour,
        description=f"Ingest yesterday's {spec.name} batch every night.",
    )
    weekly_retrain = dg.ScheduleDefinition(
        name=f"{spec.name}_weekly_retrain_schedule",
        job=by_name[training_job_name(spec)],
        cron_schedule=spec.schedules.retrain_cron,
        execution_timezone="UTC",
        description=f"Retrain {spec.name} on the latest window; gates still decide.",
    )

    @dg.schedule(
        name=f"{spec.name}_daily_monitoring_schedule",
        job=by_name[monitoring_job_name(spec)],
        cron_schedule=spec.schedules.monitoring_cron,
        execution_timezone="UTC",
        description=f"Collect yesterday's {spec.name} predictions and report their drift.",
    )
    def daily_monitoring(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason:
        # The serving partitions include today (a live view); the nightly run closes yesterday.
        day = (context.scheduled_execution_time - dt.timedelta(days=1)).date()
        if day < spec.start_date:
            # No such partition: requesting it would fail the tick on the model's first day.
            return dg.SkipReason(
                f"{day} is before {spec.name}'s first day {spec.start_date}: nothing served yet"
            )
        return dg.RunRequest(run_key=f"monitoring-{day}", partition_key=day.isoformat())

    @dg.schedule(
        name=f"{spec.name}_label_refresh_schedule",
        job=by_name[live_performance_job_name(spec)],
        cron_schedule=spec.schedules.label_refresh_cron,
        execution_timezone="UTC",
        description=f"Re-score the last {config.LABEL_REFRESH_DAYS} days of {spec.name} "
        "predictions with the labels that arrived since.",
    )
    def label_refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        # Labels for day D arrive days later, under a later ground_truth partition; D's
        # live performance is only complete once they are in, so recent days are re-scored.
        today = context.scheduled_execution_time.date()
        days = [today - dt.timedelta(days=n) for n in range(1, config.LABEL_REFRESH_DAYS + 1)]
        return [
            dg.RunRequest(run_key=f"live-{d.isoformat()}-{today}", partition_key=d.isoformat())
            for d in days
            if d >= spec.start_date
        ]

    return [daily_ingest, weekly_retrain, daily_monitoring, label_refresh]
