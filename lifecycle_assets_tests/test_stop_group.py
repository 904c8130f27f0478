"""`stop_group` stops everything a server forked, not just the process it started.

`mlflow server` forks uvicorn, a job runner and huey consumers into its process group. When the
leader exits on SIGTERM while a member keeps running (a worker in graceful shutdown waiting on a
stuck request, a process that ignores SIGTERM), waiting for the leader alone left that member
running after the test. Here a leader that exits on SIGTERM forks a child that ignores it.
"""

from __future__ import annotations

import subprocess
import sys
import time

from lifecycle_assets_tests.team_servers import group_members, stop_group

# The child ignores SIGTERM before it says it is ready; the leader waits for that, then sleeps.
CHILD = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"  # noqa: E501
LEADER = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
import time; time.sleep(600)
"""


def test_stop_group_stops_a_member_that_outlives_the_leader() -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    child = int(leader.stdout.readline())
    assert sorted(group_members(leader.pid)) == sorted([leader.pid, child])
    started = time.monotonic()
    stop_group(leader, grace=2.0)
    assert group_members(leader.pid) == []
    assert leader.returncode is not None
    # SIGTERM ended the leader at once; the child needed the SIGKILL after the grace period.
    assert time.monotonic() - started < 15
