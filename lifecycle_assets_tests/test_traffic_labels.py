"""`simulate-traffic` against the real service: every label it lands arrives at or after the
prediction it labels, as the service logged it (the time `live_performance` joins on)."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets.data import prediction_log
from lifecycle_assets.data.ground_truth import label_files, read_label_file
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.data.traffic import simulate_traffic
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_http_service import server  # noqa: F401  (fixture)

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
        log_dir=lifecycle_env.prediction_log_spool_dir,
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
