"""A run the daemon launched whose process was killed (the daemon, its code server and run
worker killed at once: a `kill -9`, an out-of-memory kill, a reboot) is ended by the daemon itself.

Dagster's run monitoring cannot tell (the default run launcher has no worker health check), so
such a run stayed STARTED forever, holding its `<model>_training` pool slot: every later training
run of the model, from a schedule or a sensor, waited on that slot forever.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg

from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.recovery_sensor import RECOVERY_SENSOR

REPO = Path(__file__).resolve().parents[1]

# A run started as a run worker starts it (no `lifecycle.host` tag: not the CLI's), holding a
# slot of the training pool when its process is killed.
KILLED_RUN = """
import os, signal
import dagster as dg

@dg.op(pool="credit_default_training")
def killed():
    os.kill(os.getpid(), signal.SIGKILL)

@dg.job
def killed_job():
    killed()

killed_job.execute_in_process(instance=dg.DagsterInstance.get())
"""


def test_the_daemon_ends_a_run_whose_process_was_killed(spec, lifecycle_env) -> None:
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_RUN], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]

    defs = build_definitions([spec])
    sensor = defs.get_repository_def().get_sensor_def(RECOVERY_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        storage = instance.event_log_storage
        assert storage.get_concurrency_run_ids() == {run.run_id}, "the kill held no slot"

        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))

        assert not tick.run_requests
        assert run.run_id in (tick.skip_message or ""), tick.skip_message
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert not storage.get_concurrency_run_ids(), "the killed run still holds its slot"
        # The next tick has nothing left to settle.
        again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert "nothing to settle" in (again.skip_message or ""), again.skip_message
