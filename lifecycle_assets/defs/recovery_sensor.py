"""The daemon settles the runs a killed daemon left behind, as `lifecycle run` does at its start.

Killing the daemon (`kill -9`, an out-of-memory kill, a reboot) kills its code server and run
workers with it, and nobody marks their runs failed: Dagster's run monitoring cannot see a dead
worker of the default run launcher, so the run stays STARTED forever and keeps its
`<model>_training` pool slot, and every later training run of the model waits on it forever.
On PostgreSQL the daemon may run on any machine: a run is ended only on the host its executor
tagged it with (defs/executors.py); STARTED runs of other hosts, or not tagged yet, are named in
the tick's message and left alone.
"""

from __future__ import annotations

import dagster as dg

from lifecycle_assets.recovery import recover_dagster

RECOVERY_SENSOR = "lifecycle_recovery_sensor"


@dg.sensor(
    name=RECOVERY_SENSOR,
    minimum_interval_seconds=60,
    # Changes nothing a live run owns (its process must be gone): on by default, so a restart
    # of the daemon alone recovers.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ends as failed the runs whose process is gone (a killed daemon or run worker) "
    "and frees the pool slots they held.",
)
def recovery_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    recovery = recover_dagster(context.instance)
    lines = []
    if recovery:
        failed = ", ".join(recovery.dagster_runs_failed) or "none"
        lines.append(f"{recovery.summary()}; ended: {failed}")
    if recovery.dagster_runs_unchecked:
        lines.append(recovery.unchecked_note())
    if not lines:
        return dg.SkipReason("nothing to settle: no run of a killed process")
    summary = "; ".join(lines)
    context.log.warning(summary)
    return dg.SkipReason(summary)
