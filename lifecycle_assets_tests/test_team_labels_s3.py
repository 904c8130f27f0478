"""Delayed labels landed on the team's object storage: the `ground_truth` asset read its folder
with `pathlib.Path`, so in team mode every monitoring run failed (`TypeError: expected str,
bytes or os.PathLike object, not S3Path`, three tries) and `lifecycle monitor` said only
"Exceeded max_retries of 2". Real moto S3 server; nothing skips."""

from __future__ import annotations

import datetime as dt

import pytest

from lifecycle_assets import storage
from lifecycle_assets.data import ground_truth
from lifecycle_assets.settings import LifecycleSettings
from lifecycle_assets_tests.team_servers import S3Server, moto_s3  # noqa: F401  (fixture)

pytestmark = [pytest.mark.team]

GOOD = "prediction_id,label,labelled_at\np-1,1,2026-12-01T10:00:00Z\np-2,0,2026-12-01T11:00:00Z\n"
BAD = "prediction_id,label,labelled_at\np-3,7,2026-12-01T10:00:00Z\np-4,1,2026-12-01T12:00:00Z\n"


def test_labels_on_object_storage_are_read_and_named_by_their_url(
    moto_s3: S3Server,  # noqa: F811
) -> None:
    settings = LifecycleSettings.from_env(
        {
            "LIFECYCLE_STORAGE_URL": moto_s3.url("labels-test"),
            "AWS_ENDPOINT_URL": moto_s3.endpoint_url,
        }
    )
    folder = ground_truth.labels_folder(settings.landing_dir, "credit_default")
    quarantine_to = ground_truth.labels_quarantine(settings.quarantine_dir, "credit_default")
    day = dt.date(2026, 12, 1)

    nothing = ground_truth.arrivals(folder, day, "binary_classification", quarantine_to)
    assert nothing.labels.is_empty() and nothing.sources == []

    storage.write_text(folder / "a.csv", GOOD)
    storage.write_text(folder / "b.csv", BAD)
    # What the asset reports as `files_in_folder`.
    assert [p.name for p in ground_truth.label_files(folder)] == ["a.csv", "b.csv"]
    found = ground_truth.arrivals(folder, day, "binary_classification", quarantine_to)
    assert sorted(found.labels["prediction_id"].to_list()) == ["p-1", "p-2", "p-4"]
    assert [str(p) for p in found.sources] == [str(folder / "a.csv"), str(folder / "b.csv")]
    assert found.problems and all(p.file == str(folder / "b.csv") for p in found.problems)
    (report,) = found.quarantined
    assert str(report).startswith("s3://"), report
    assert storage.read_json(report)["file"] == str(folder / "b.csv"), "names the stored object"


def test_simulated_labels_land_on_object_storage_and_are_read_back(
    moto_s3: S3Server,  # noqa: F811
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`simulate-traffic` lands its labels in the team's landing folder: `Path()` on the
    `s3://` folder made a local `s3:/...` folder instead (or failed)."""
    import polars as pl

    monkeypatch.chdir(tmp_path)  # where a local `s3:` folder would appear
    settings = LifecycleSettings.from_env(
        {
            "LIFECYCLE_STORAGE_URL": moto_s3.url("simulated-labels"),
            "AWS_ENDPOINT_URL": moto_s3.endpoint_url,
        }
    )
    folder = ground_truth.labels_folder(settings.landing_dir, "credit_default")
    predicted_at = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)
    predictions = pl.DataFrame(
        {
            "prediction_id": ["p-1", "p-2"],
            "record_id": ["a-1", "a-2"],
            "predicted_at": [predicted_at, predicted_at],
        }
    )
    truth = pl.DataFrame({"application_id": ["a-1", "a-2"], "default": [1, 0]})

    files = ground_truth.write_delayed_labels(
        predictions, truth, record_id_column="application_id", label_column="default",
        delay=dt.timedelta(days=1), out_dir=folder,
    )  # fmt: skip

    assert [str(f).startswith("s3://") for f in files] == [True], files
    assert not list(tmp_path.iterdir()), "wrote a local folder named after the URL"
    labels = ground_truth.read_labels(folder, dt.date(2026, 12, 2))
    assert sorted(labels["prediction_id"].to_list()) == ["p-1", "p-2"]
