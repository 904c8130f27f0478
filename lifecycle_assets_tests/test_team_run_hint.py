"""After a team-mode `lifecycle run`, its "next:" line names the team's UIs: it said `make dev`
and `make mlflow-ui`, which open the embedded SQLite stores a team run never wrote."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from lifecycle_assets.cli import main
from lifecycle_assets_tests.small_project import project_env, write_spec
from lifecycle_assets_tests.team_servers import (  # noqa: F401  (fixtures)
    MlflowServer,
    S3Server,
    mlflow_server,
    moto_s3,
    postgres_url,
    team_dagster_home,
    team_environment,
)

pytestmark = [pytest.mark.e2e, pytest.mark.team]


def test_a_team_run_points_at_the_team_dagster_and_mlflow(
    mlflow_server: MlflowServer,  # noqa: F811
    moto_s3: S3Server,  # noqa: F811
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = {
        **project_env(tmp_path),
        **team_environment(moto_s3, postgres_url, mlflow_server, f"hint-{uuid.uuid4().hex[:8]}"),
        **team_dagster_home(tmp_path / "dagster_home_team", postgres_url),
        "LIFECYCLE_DAGSTER_URL": "",
        "LIFECYCLE_CELERY_BROKER": "",
    }
    result = CliRunner().invoke(main, ["run", "--spec", str(write_spec(tmp_path))], env=env)

    assert result.exit_code == 0, result.output
    # The console wraps the line at its width.
    hint = " ".join(result.output.split("\nnext:", 1)[1].split())
    assert "`make team-dev`" in hint and "`make dev`" not in hint, hint
    assert f"the MLflow UI at {mlflow_server.url}" in hint and "mlflow-ui" not in hint, hint
