"""`lifecycle monitor` when MLflow cannot be used: one line naming the server and its error, exit
1. Before, the drift step retried to its end and the command said only "monitoring <day> failed:
Exceeded max_retries of 2", Dagster's outer wrapper, whatever the cause.

Two real faults: nothing listens at MLFLOW_TRACKING_URI; and a real `mlflow server` whose
PostgreSQL store stops accepting connections (the server answers its health check; every API
call waits on the store until the client gives up)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from click.testing import CliRunner

from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.mlflow_server import server_command
from lifecycle_assets_tests.log_rows import append_log_rows
from lifecycle_assets_tests.small_project import PROJECT_DAGSTER_YAML
from lifecycle_assets_tests.team_servers import (
    POSTGRES_ADMIN_URL,
    create_database,
    drop_database,
    free_port,
    group_members,
    stop_group,
    wait_for_port,
)

pytestmark = [pytest.mark.team]

DAY = "2026-01-05"


@contextlib.contextmanager
def _server_without_store(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real MLflow server whose PostgreSQL database then refuses every connection: its URL and
    its process group (the server and the uvicorn worker it forks)."""
    import subprocess

    # Every step that can fail sits inside the `try` that undoes what came before it: a server
    # started and then left by a failed step would outlive the test.
    admin = psycopg2.connect(POSTGRES_ADMIN_URL)
    admin.autocommit = True
    database = create_database("lifecycle_mlflow")
    name = database.rsplit("/", 1)[1]
    port = free_port()
    command = server_command(
        database_url=database,
        artifacts_destination=(tmp_path / "mlartifacts").as_uri(),
        host="127.0.0.1",
        port=port,
    )
    try:
        with (tmp_path / "mlflow-server.log").open("w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
        try:
            wait_for_port(port, process, "mlflow server", timeout=150)
            with admin.cursor() as cursor:
                cursor.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
            yield f"http://127.0.0.1:{port}", process.pid
        finally:
            stop_group(process)
    finally:
        admin.close()
        drop_database(database)


@pytest.mark.parametrize("fault", ["server down", "store down"])
def test_monitor_names_the_unusable_mlflow_and_its_error(
    fault: str, lifecycle_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dagster_home" / "dagster.yaml").write_text(PROJECT_DAGSTER_YAML.read_text())
    # One answered prediction of v1 that day: its drift needs v1's profile from MLflow.
    row = {
        "prediction_id": uuid.uuid4().hex,
        "model_name": "credit_default",
        "model_version": "1",
        "score": 0.3,
        "prediction": 0,
        "predicted_at": f"{DAY}T10:00:00+00:00",
    }
    append_log_rows(lifecycle_env.prediction_log_dir, "credit_default", [row])
    # The server waits on its store for minutes (its own retries), and MLflow's client would
    # retry with backoff: a short request timeout and no retries keep the test short.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    server_group = None
    with contextlib.ExitStack() as stack:
        if fault == "server down":
            url = f"http://127.0.0.1:{free_port()}"
            expected = [f"the MLflow server {url} (MLFLOW_TRACKING_URI) does not answer"]
        else:
            url, server_group = stack.enter_context(_server_without_store(tmp_path))
            expected = [f"API request to {url}/api/", "Read timed out"]
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        result = CliRunner().invoke(main, ["monitor", "--day", DAY])
    if server_group is not None:
        # The server's worker was still waiting on the store for the request the client gave up
        # on: nothing of the server may outlive the test (it was seen running 8 minutes later).
        assert group_members(server_group) == [], f"left running: {group_members(server_group)}"
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: monitoring {DAY} failed: credit_default__drift_report: "), (
        result.output
    )
    assert "Exceeded max_retries" not in last
    for part in expected:
        assert part in last, result.output
    assert "Traceback" not in result.output
