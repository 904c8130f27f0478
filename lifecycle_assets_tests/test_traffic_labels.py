"""`simulate-traffic` against the real service: every label it lands arrives at or after the
prediction it labels, as the service logged it (the time `live_performance` joins on)."""

import datetime as dt
import uuid
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from lifecycle_assets import config, storage
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.data import prediction_log
from lifecycle_assets.data.ground_truth import label_files, labels_folder, read_label_file
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.data.traffic import simulate_traffic
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.team_servers import S3Server, moto_s3  # noqa: F401  (fixture)
from lifecycle_assets_tests.test_http_service import (  # noqa: F401  (fixture)
    SERVICE,
    server,
    serving,
)

pytestmark = pytest.mark.e2e


def test_labels_with_no_delay_never_precede_their_logged_prediction(
    server: str,  # noqa: F811
    lifecycle_env: Settings,
    spec: ModelSpec,
    tmp_path: Path,
) -> None:
    batches = [(dt.date(2026, 3, 9), simulate_day(dt.date(2026, 3, 9), rows_per_day=400))]
    answers, files = simulate_traffic(
        server,
        batches,
        spec,
        labels_dir=tmp_path / "labels",
        log_dirs=[lifecycle_env.prediction_log_spool_dir],
        label_delay=dt.timedelta(0),
    )
    assert answers["predicted_at"].null_count() == 0, "every answer found in the service's log"
    assert files and answers.height == 400
    today = dt.datetime.now(dt.UTC).date()
    logged = prediction_log.read_days(
        lifecycle_env, spec.name, today - dt.timedelta(days=1), today
    ).select("prediction_id", "predicted_at")
    labels = pl.concat([read_label_file(p) for p in label_files(tmp_path / "labels")])
    joined = labels.join(logged, on="prediction_id", how="inner")
    assert joined.height == 400, "every label names a prediction the service logged"
    early = joined.filter(pl.col("labelled_at") < pl.col("predicted_at"))
    assert early.is_empty(), f"{early.height} label(s) before their prediction: {early.head(3)}"


@pytest.mark.team
def test_labels_land_for_a_service_whose_log_is_shipped_from_another_home(
    registered_champion: ModelRef,
    moto_s3: S3Server,  # noqa: F811
    lifecycle_env: Settings,
    spec: ModelSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Team mode: the service (another machine: a LIFECYCLE_HOME of its own) ships its log to
    the shared storage; `simulate-traffic` found nothing in its own spool and landed no label
    (it said so in yellow and exited 0). It reads the shared log now."""
    team = {
        "LIFECYCLE_STORAGE_URL": moto_s3.url(f"traffic-{uuid.uuid4().hex[:8]}"),
        "LIFECYCLE_LOG_SHIP_SECONDS": "1",
    }
    service_home = home_sharing_the_ledger(tmp_path, lifecycle_env)
    with serving(
        SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry", LIFECYCLE_HOME=service_home, **team
    ) as url:
        for key, value in team.items():
            monkeypatch.setenv(key, value)
        command = ["simulate-traffic", "--service-url", url, "--rows-per-day", "100"]
        result = CliRunner().invoke(main, [*command, "--label-delay-days", "0"])

    assert result.exit_code == 0, result.output
    assert "not found" not in result.output, result.output
    settings = Settings.from_env()
    assert not Path(settings.prediction_log_spool_dir).exists(), "nothing logged on this home"
    folder = labels_folder(settings.landing_dir, spec.name)
    labels = pl.concat([read_label_file(p) for p in _local_copies(folder, tmp_path)])
    today = dt.datetime.now(dt.UTC).date()
    logged = prediction_log.read_days(settings, spec.name, today - dt.timedelta(days=1), today)
    joined = labels.join(logged.select("prediction_id", "predicted_at"), on="prediction_id")
    assert labels.height == joined.height == 100, result.output
    assert joined.filter(pl.col("labelled_at") < pl.col("predicted_at")).is_empty()


def home_sharing_the_ledger(tmp_path: Path, settings: Settings) -> str:
    """A LIFECYCLE_HOME of the service's own that reads this project's alias ledger, as a
    service on another machine reads the team's (it serves only what the ledger promoted)."""
    home = tmp_path / "service_home"
    home.mkdir()
    (home / config.LEDGER_DIR).symlink_to(settings.home / config.LEDGER_DIR)
    return str(home)


def _local_copies(folder: Path, tmp_path: Path) -> list[Path]:
    """The label files of an object-storage folder, copied here to be read as files."""
    copies = tmp_path / "label_copies"
    copies.mkdir()
    for remote in label_files(folder):
        storage.get_file(remote, copies / remote.name)
    return label_files(copies)


def test_no_label_and_exit_1_when_the_services_log_is_nowhere_to_be_read(
    registered_champion: ModelRef,
    lifecycle_env: Settings,
    tmp_path: Path,
) -> None:
    """Embedded, a service with a home of its own keeps its log where this command cannot see
    it: one line saying so, exit 1 (it printed a yellow note and exited 0)."""
    service_home = home_sharing_the_ledger(tmp_path, lifecycle_env)
    with serving(
        SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry", LIFECYCLE_HOME=service_home
    ) as url:
        command = ["simulate-traffic", "--service-url", url, "--rows-per-day", "20"]
        result = CliRunner().invoke(main, command)

    assert result.exit_code == 1, result.output
    assert "none is in its log at" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
