"""Label files on the team's object storage: `check_label_file` / `read_label_file` took local
paths only (`Path("s3://b/k.csv")` is a local `s3:/b/k.csv`), and no command landed a label
file at all, while the rest of team mode reads and writes through `storage`. `lifecycle labels
FILE|URL` checks the file and lands its exact bytes where `ground_truth` reads them; bad input
ends in one line and writes nothing. Real moto S3 server; nothing mocked."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from lifecycle_assets import storage
from lifecycle_assets.cli import main
from lifecycle_assets.data import ground_truth
from lifecycle_assets.settings import LifecycleSettings
from lifecycle_assets_tests.team_servers import S3Server, moto_s3  # noqa: F401  (fixture)

pytestmark = [pytest.mark.team]

GOOD = "prediction_id,label,labelled_at\np-1,1,2026-12-01T10:00:00Z\np-2,0,2026-12-01T11:00:00Z\n"
BAD = "prediction_id,label,labelled_at\np-3,7,2026-12-01T10:00:00Z\np-4,1,2026-12-01T12:00:00Z\n"


@pytest.fixture
def team_storage(
    moto_s3: S3Server,  # noqa: F811
    lifecycle_env,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """The shared storage on moto for this test; its URL."""
    url = moto_s3.url(f"upload-{dt.datetime.now().timestamp()}")
    monkeypatch.setenv("LIFECYCLE_STORAGE_URL", url)
    return url


def _labels(*args: str):
    result = CliRunner().invoke(main, ["labels", *args, "--spec", "credit_default"])
    return result.exit_code, result.output.strip()


def test_a_label_file_on_s3_is_checked_and_landed_where_ground_truth_reads_it(
    team_storage: str,
) -> None:
    source = f"{team_storage}/incoming/labels-2026-12-01.csv"
    storage.write_text(source, GOOD)
    labels = ground_truth.read_label_file(source)
    assert labels["prediction_id"].to_list() == ["p-1", "p-2"]

    code, output = _labels(source)
    assert code == 0, output
    folder = ground_truth.labels_folder(LifecycleSettings.from_env().landing_dir, "credit_default")
    landed = folder / "labels-2026-12-01.csv"
    assert str(landed).startswith("s3://")
    assert (
        output
        == f"credit_default: 2 label(s), labelled 2026-12-01 .. 2026-12-01, landed in {landed}"
    )
    assert storage.read_text(landed) == GOOD
    found = ground_truth.arrivals(folder, dt.date(2026, 12, 1), "binary_classification")
    assert sorted(found.labels["prediction_id"].to_list()) == ["p-1", "p-2"]

    again = _labels(source)
    assert again[0] == 0 and "already landed as" in again[1]


def test_bad_label_input_is_one_line_and_nothing_is_lost(team_storage: str) -> None:
    folder = ground_truth.labels_folder(LifecycleSettings.from_env().landing_dir, "credit_default")

    missing = f"{team_storage}/incoming/nowhere.csv"
    code, output = _labels(missing)
    assert code == 1 and output == f"Error: {missing}: no such file or object"

    bad = f"{team_storage}/incoming/bad.csv"
    storage.write_text(bad, BAD)
    code, output = _labels(bad)
    assert code == 1 and len(output.splitlines()) == 1, output
    assert f"{bad}: line 2: column 'label' must hold only 0 and 1, found '7'" in output
    assert storage.read_text(bad) == BAD, "the source is never changed"
    assert ground_truth.label_files(folder) == [], "a refused file lands nothing"

    # A different file under a name already landed: refused, the landed one kept.
    first = f"{team_storage}/incoming/day.csv"
    storage.write_text(first, GOOD)
    assert _labels(first)[0] == 0
    second = f"{team_storage}/elsewhere/day.csv"
    storage.write_text(second, GOOD.replace("p-2,0", "p-2,1"))
    code, output = _labels(second)
    assert code == 1 and "already holds a different label file" in output, output
    assert storage.read_text(folder / "day.csv") == GOOD


def test_a_local_label_file_lands_on_the_team_storage(team_storage: str, tmp_path) -> None:
    local = tmp_path / "local-labels.csv"
    local.write_text(GOOD)
    code, output = _labels(str(local))
    assert code == 0, output
    folder = ground_truth.labels_folder(LifecycleSettings.from_env().landing_dir, "credit_default")
    assert storage.read_text(folder / "local-labels.csv") == GOOD
