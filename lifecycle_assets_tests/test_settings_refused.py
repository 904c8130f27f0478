"""A refused setting ends any `lifecycle` command in one line naming the variable, exit 1; the
Dagster code location says the same sentence (the service: `test_service_resilience.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lifecycle_assets.cli import main


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"LIFECYCLE_PROFILE": "Team"}, "LIFECYCLE_PROFILE: Input should be 'embedded' or 'team'"),
        (
            {"LIFECYCLE_PROFILE": "team", "LIFECYCLE_STORAGE_URL": "s3://b/p"},
            "LIFECYCLE_PROFILE=team needs DATABASE_URL",
        ),
        ({"LIFECYCLE_DAGSTER_URL": "127.0.0.1:3000"}, "LIFECYCLE_DAGSTER_URL: "),
        # The team's URLs with the profile forgotten: before, the ledger silently stayed in
        # SQLite while aliases moved on the shared MLflow server.
        (
            {
                "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/lifecycle",
                "MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
            },
            "LIFECYCLE_PROFILE is not team: the alias ledger would stay in SQLite",
        ),
        (
            {
                "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/lifecycle",
                "LIFECYCLE_STORAGE_URL": "s3://lifecycle/team",
            },
            "set LIFECYCLE_PROFILE=team",
        ),
        # The service's per-address bounds: a whole number of at least 1.
        (
            {"LIFECYCLE_MAX_CONNECTIONS_PER_CLIENT": "0"},
            "LIFECYCLE_MAX_CONNECTIONS_PER_CLIENT: Input should be greater than or equal to 1",
        ),
        ({"LIFECYCLE_ADMIN_MAX_FAILURES": "five"}, "LIFECYCLE_ADMIN_MAX_FAILURES: Input should"),
    ],
)
def test_refused_settings_are_one_line(
    environment: dict[str, str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no `.env` of the checkout
    for key in (
        "DATABASE_URL",
        "LIFECYCLE_STORAGE_URL",
        "MLFLOW_TRACKING_URI",
        "LIFECYCLE_PROFILE",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["history", "credit_default"], env=environment)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: the settings (environment or .env) are refused: ")
    assert named in lines[0]
    assert "errors.pydantic.dev" not in lines[0]


def test_a_database_url_alone_keeps_the_embedded_default(tmp_path: Path) -> None:
    """DATABASE_URL is a common name (a host may set it for another app): by itself it changes
    nothing and refuses nothing; only with the team's other URLs does it ask for the profile."""
    from lifecycle_assets.settings import LifecycleSettings

    settings = LifecycleSettings.from_env(
        {"LIFECYCLE_HOME": str(tmp_path), "DATABASE_URL": "postgresql://u@db:5432/app"}
    )
    assert not settings.team and settings.mlflow_tracking_uri.startswith("sqlite:///")


def test_the_code_location_names_the_refused_variable(tmp_path: Path) -> None:
    """Before: pydantic's multi-line ValidationError, with its documentation URL."""
    env = {**os.environ, "LIFECYCLE_PROFILE": "Team", "LIFECYCLE_HOME": str(tmp_path / "home")}
    env["DAGSTER_HOME"] = str(tmp_path)
    (tmp_path / "dagster.yaml").write_text("")
    command = [sys.executable, "-m", "dagster", "definitions", "validate"]
    command += ["-m", "lifecycle_assets.definitions"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (
        "SettingsRefused: the settings (environment or .env) are refused: "
        "LIFECYCLE_PROFILE: Input should be 'embedded' or 'team'"
    ) in output, output[-3000:]
    assert "pydantic_core" not in output and "errors.pydantic.dev" not in output, output
