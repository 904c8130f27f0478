"""Declarative automation: canary analysis after each new prediction log, and the freshness
policy of the monitoring assets (prediction log, drift report, ground truth). Steps that do I/O
are retried by `io_retry`, not by a Dagster `RetryPolicy` (which retries Ctrl-C too).

Canary analysis is event-driven rather than a fixed-time schedule: it runs once the day's
prediction log is in, whenever that happens (the nightly monitoring job or `lifecycle monitor`).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from lifecycle_assets.defs import names
from lifecycle_assets.defs.cron_interval import smallest_interval
from lifecycle_assets.spec import ModelSpec

# The nightly run closes yesterday, so yesterday's partition must count, not only today's.
CANARY_LOOKBACK = dt.timedelta(days=2)
# Yesterday's monitoring partitions are due this many hours after the nightly monitoring run.
FRESHNESS_GRACE_HOURS = 4


def canary_condition() -> dg.AutomationCondition:
    """`eager()`, over the last two days: run when a day's prediction log is (re)materialized."""
    return (
        dg.AutomationCondition.eager()
        .replace(
            dg.AutomationCondition.in_latest_time_window(),
            dg.AutomationCondition.in_latest_time_window(CANARY_LOOKBACK),
        )
        .with_label("after each new prediction log of the last two days")
    )


def automation_sensor(spec: ModelSpec) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the model's automation conditions (canary analysis) every 30 s; on by default:
    the analysis only acts when a canary is set and its evidence suffices."""
    return dg.AutomationConditionSensorDefinition(
        f"{spec.name}_automation_sensor",
        target=dg.AssetSelection.assets(names.key(spec.name, names.CANARY_ANALYSIS)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description=f"Runs {spec.name}'s canary analysis once a day's prediction log is in.",
    )


def monitoring_freshness(spec: ModelSpec) -> dg.FreshnessPolicy:
    """Each monitoring asset materializes between the nightly monitoring run and a few hours
    after it; later than that, Dagster shows it as stale (evaluated by the daemon, no sensor)."""
    minute, hour, *rest = spec.schedules.monitoring_cron.split()
    deadline = (
        " ".join([minute, str((int(hour) + FRESHNESS_GRACE_HOURS) % 24), *rest])
        if hour.isdigit()
        else spec.schedules.monitoring_cron
    )
    # Dagster refuses a lower bound longer than the gap between two deadlines, and the refusal
    # fails the whole code location: a spec monitoring hourly gets the hour as its bound.
    grace = dt.timedelta(hours=FRESHNESS_GRACE_HOURS)
    return dg.FreshnessPolicy.cron(
        deadline_cron=deadline,
        lower_bound_delta=min(grace, smallest_interval(deadline)),
        timezone="UTC",
    )
