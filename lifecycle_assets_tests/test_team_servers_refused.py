"""Team mode on servers that cannot be used. Object storage (a bucket nobody created, an
endpoint that does not answer): `lifecycle run` and `lifecycle monitor` end in one line naming
LIFECYCLE_STORAGE_URL and the endpoint, exit 1, before any Dagster run exists. Before, the run
started and failed inside a step with an S3 traceback (or NoSuchBucket and a log path in the very
bucket that does not exist). An MLflow server that does not answer: one line naming
MLFLOW_TRACKING_URI within seconds; before, MLflow's client retried for about four minutes and
then named an API path. Real moto server and PostgreSQL; nothing skips."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lifecycle_assets.cli import main
from lifecycle_assets_tests.team_servers import (  # noqa: F401  (fixtures)
    S3Server,
    free_port,
    moto_s3,
    postgres_url,
)

pytestmark = [pytest.mark.team]


def _team(s3_endpoint: str, storage_url: str, database_url: str, tmp_path: Path) -> dict:
    return {
        "LIFECYCLE_PROFILE": "team",
        "LIFECYCLE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DATABASE_URL": database_url,
        "LIFECYCLE_STORAGE_URL": storage_url,
        # Never reached: the storage is refused first.
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "LIFECYCLE_S3_ENDPOINT_URL": s3_endpoint,
    }


@pytest.mark.parametrize("command", [["run"], ["monitor", "--day", "2026-01-05"]])
@pytest.mark.parametrize("fault", ["no bucket", "endpoint down"])
def test_unusable_storage_is_one_line_before_any_run(
    command: list[str],
    fault: str,
    moto_s3: S3Server,  # noqa: F811
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    if fault == "no bucket":
        endpoint, storage_url = moto_s3.endpoint_url, "s3://nobody-made-this-bucket/team"
        expected = "bucket 'nobody-made-this-bucket' does not exist at " + endpoint
    else:
        endpoint = f"http://127.0.0.1:{free_port()}"
        storage_url, expected = moto_s3.url("team"), f"at {endpoint} (AWS_ENDPOINT_URL)"
    env = _team(endpoint, storage_url, postgres_url, tmp_path)
    result = CliRunner().invoke(main, command, env=env)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: the shared storage {storage_url} (LIFECYCLE_STORAGE_URL)"), (
        result.output
    )
    assert expected in last
    assert "Traceback" not in result.output
    assert not (tmp_path / "dagster_home").exists(), "no Dagster instance was opened, no run made"


@pytest.mark.parametrize("command", [["history", "credit_default"], ["run"]])
def test_a_silent_mlflow_server_is_one_line_within_seconds(
    command: list[str],
    moto_s3: S3Server,  # noqa: F811
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    env = _team(moto_s3.endpoint_url, moto_s3.url("team"), postgres_url, tmp_path)
    started = time.monotonic()
    result = CliRunner().invoke(main, command, env=env)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    expected = f"Error: the MLflow server {env['MLFLOW_TRACKING_URI']} (MLFLOW_TRACKING_URI) "
    assert last.startswith(expected + "does not answer"), result.output
    assert elapsed < 60, f"{elapsed:.0f} s to say the server does not answer"
