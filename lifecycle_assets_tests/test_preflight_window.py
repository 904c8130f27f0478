"""`preflight` says which days the training window keeps, so its rows per split add up."""

from __future__ import annotations

from pathlib import Path

from lifecycle_assets.data.preflight import preflight
from lifecycle_assets_tests.test_data_gates_units import members_frame, write_csv, write_spec


def test_a_window_narrower_than_the_data_is_named_with_its_rows(tmp_path: Path) -> None:
    """README's churn walk: 2700 rows over 90 days, then "rows per split: train 1170,
    validation 270, test 360" (1800) with no word of the 900 rows the 60-day window leaves out."""
    csv = write_csv(members_frame(days=6), tmp_path / "members.csv")  # 6 weekdays, 250 rows each
    lines = preflight(write_spec(tmp_path, csv, window=4)).lines()
    expected = (
        "training window: the last 4 of 6 day(s) with rows, 2026-03-04 .. 2026-03-09 (1000 of "
        "1500 rows; training.window_days=4); earlier days are not trained on"
    )
    assert any(line.strip() == expected for line in lines), lines
    whole = preflight(write_spec(tmp_path, csv, window=12)).lines()
    assert not any("training window" in line for line in whole), whole
