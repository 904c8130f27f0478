"""The one settings object: embedded defaults, `.env`, empty variables, and team mode's needs."""

import os
from pathlib import Path

import pytest

from lifecycle_assets import config
from lifecycle_assets.settings import LifecycleSettings, SettingsRefused, load_env_file

TEAM = {
    "LIFECYCLE_PROFILE": "team",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/lifecycle",
    "LIFECYCLE_STORAGE_URL": "s3://lifecycle-bucket/prod",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "AWS_ENDPOINT_URL": "http://minio:9000",
    "LIFECYCLE_CELERY_BROKER": "pyamqp://guest:guest@rabbitmq:5672//",
}


def test_embedded_default_keeps_everything_under_home(tmp_path: Path) -> None:
    settings = LifecycleSettings.from_env({"LIFECYCLE_HOME": str(tmp_path)})
    assert config.Settings is LifecycleSettings, "config.Settings is the same object, not a copy"
    assert not settings.team and settings.service_host == "127.0.0.1"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert settings.mlflow_artifact_root == (tmp_path / "mlartifacts").as_uri()
    assert settings.lake_dir == tmp_path / "lake"
    assert isinstance(settings.reports_dir, Path), "local folders stay plain paths"
    assert settings.storage_options == {}
    # The checkout's bentofile and pins build the Bento, unless an image names its own copy.
    assert (settings.project_dir / "bentofile.yaml").is_file()
    assert (settings.project_dir / "constraints.txt").is_file()
    image = LifecycleSettings.from_env({"LIFECYCLE_PROJECT_DIR": "/app"})
    assert image.project_dir == Path("/app")


def test_empty_variables_count_as_unset(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path))
    for name in ("LIFECYCLE_MLFLOW_EXPERIMENT", "MLFLOW_TRACKING_URI", "LIFECYCLE_SERVICE_HOST"):
        monkeypatch.setenv(name, "")
    explicit = {"LIFECYCLE_HOME": str(tmp_path), "LIFECYCLE_MLFLOW_EXPERIMENT": ""}
    for settings in (LifecycleSettings.from_env(), LifecycleSettings.from_env(explicit)):
        assert settings.mlflow_experiment == "lifecycle-assets"
        assert settings.service_host == "127.0.0.1"
        assert settings.mlflow_tracking_uri.startswith("sqlite:///")


def test_dotenv_is_read_and_exported_without_overriding(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        f"LIFECYCLE_HOME={tmp_path / 'from_dotenv'}\nLIFECYCLE_MLFLOW_EXPERIMENT=from-dotenv\n"
        "LIFECYCLE_SERVICE_HOST=0.0.0.0\nLIFECYCLE_UNUSED_BY_SETTINGS=x\n"
    )
    monkeypatch.delenv("LIFECYCLE_HOME", raising=False)
    monkeypatch.delenv("LIFECYCLE_UNUSED_BY_SETTINGS", raising=False)
    monkeypatch.setenv("LIFECYCLE_MLFLOW_EXPERIMENT", "from-environment")
    settings = LifecycleSettings.from_env()
    assert settings.home == tmp_path / "from_dotenv"
    assert settings.mlflow_experiment == "from-environment", "the environment wins over .env"
    assert settings.service_host == "0.0.0.0"
    load_env_file()

    assert os.environ["LIFECYCLE_UNUSED_BY_SETTINGS"] == "x"
    assert os.environ["LIFECYCLE_MLFLOW_EXPERIMENT"] == "from-environment"


def test_team_profile_points_every_store_at_shared_servers() -> None:
    settings = LifecycleSettings.from_env(TEAM)
    assert settings.team
    assert str(settings.lake_dir) == "s3://lifecycle-bucket/prod/lake"
    assert settings.lake_dir.storage_options["endpoint_url"] == "http://minio:9000"
    assert str(settings.quarantine_dir).startswith("s3://lifecycle-bucket/prod/")
    assert settings.celery_broker == TEAM["LIFECYCLE_CELERY_BROKER"]
    changed = settings.replace(mlflow_experiment="other")
    assert changed.mlflow_experiment == "other" and changed.lake_dir == settings.lake_dir


@pytest.mark.parametrize("missing", ["DATABASE_URL", "LIFECYCLE_STORAGE_URL"])
def test_team_profile_names_what_it_misses(missing: str) -> None:
    with pytest.raises(SettingsRefused, match=missing):
        LifecycleSettings.from_env({k: v for k, v in TEAM.items() if k != missing})


def test_team_profile_refuses_a_local_mlflow_store() -> None:
    with pytest.raises(SettingsRefused, match="MLFLOW_TRACKING_URI"):
        LifecycleSettings.from_env({**TEAM, "MLFLOW_TRACKING_URI": "sqlite:///x.db"})
