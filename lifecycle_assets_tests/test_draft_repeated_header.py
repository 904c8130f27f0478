"""A CSV made by concatenating exports repeats its header line mid-file. `draft-spec` read that
line as data: the target's values became 0, 1 and "label" (a regression), numeric columns became
text. Now the draft finds such lines, names them (count and line numbers), leaves them out of
the types and values, and says so; ingest sets the same rows aside, counted (never dropped)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from lifecycle_assets.cli.app import main
from lifecycle_assets.data.draft import draft_spec
from lifecycle_assets.data.preflight import preflight
from lifecycle_assets.data.sources import undated_rows
from lifecycle_assets.spec import load_spec
from lifecycle_assets_tests.test_data_gates_units import members_frame, write_csv


def _concatenated(tmp_path: Path, *, timed: bool = True) -> tuple[Path, list[int]]:
    """Three exports of one table glued together; the line numbers of the repeated headers."""
    frame = (
        members_frame()
        .with_columns(pl.col("left").replace_strict({"Yes": 1, "No": 0}).alias("label"))
        .drop("left")
    )
    if not timed:
        frame = frame.drop("event_time")
    csv = write_csv(frame, tmp_path / "exports.csv")
    lines = csv.read_text().splitlines()
    for at in (400, 1000):  # 0-based index in the file's lines
        lines.insert(at, lines[0])
    csv.write_text("\n".join(lines) + "\n")
    return csv, [401, 1001]


@pytest.mark.parametrize("timed", [True, False], ids=["timed", "snapshot"])
def test_draft_spec_leaves_out_repeated_headers_and_says_where(tmp_path: Path, timed: bool) -> None:
    csv, where = _concatenated(tmp_path, timed=timed)
    text = draft_spec(csv)
    assert f"# 2 repeated header line(s) (lines {where[0]}, {where[1]}) left out" in text, text
    assert "target: label" in text and "task: regression" not in text, text
    assert "positive_label" not in text  # 0/1, as the file writes it
    assert "not ISO 8601" not in text  # the header's "event_time" is no odd time
    path = tmp_path / "draft.yaml"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.feature("tenure").type == "numeric" and spec.feature("spend").type == "numeric"
    assert spec.feature("plan").categories == ("Basic", "Plus", "Pro")
    assert spec.task != "regression"


def test_the_cli_prints_the_repeated_headers(tmp_path: Path) -> None:
    csv, where = _concatenated(tmp_path)
    result = CliRunner().invoke(main, ["draft-spec", str(csv)])
    assert result.exit_code == 0, result.output
    assert f"lines {where[0]}, {where[1]}" in result.output


def test_ingest_counts_the_repeated_headers_as_rows_without_a_time(tmp_path: Path) -> None:
    """Ingest reads the spec the draft wrote: each repeated header is a row whose event time
    ("event_time") cannot be read, set aside by `quarantine_undated` and counted by preflight
    (the e2e run is `test_undated_rows.py`'s "repeated header mid-file")."""
    csv, _ = _concatenated(tmp_path)
    path = tmp_path / "draft.yaml"
    path.write_text(draft_spec(csv))
    spec = load_spec(path)
    undated = undated_rows(spec)
    assert undated.height == 2 and set(undated["event_time"]) == {"event_time"}
    report = preflight(spec)
    assert [w for w in report.warnings if "2 row(s) have no readable timestamp" in w], (
        report.lines()
    )


def test_a_snapshot_with_repeated_headers_is_quarantined_as_the_draft_says(tmp_path: Path) -> None:
    """Without a timestamp the rows cannot be set aside one by one: the snapshot's one batch
    fails validation naming the header's values, so nothing is trained on silently."""
    from lifecycle_assets.data.ingest import validate_raw
    from lifecycle_assets.data.sources import read_day

    csv, _ = _concatenated(tmp_path, timed=False)
    path = tmp_path / "draft.yaml"
    text = draft_spec(csv)
    assert "ingest quarantines the snapshot for them" in text
    path.write_text(text)
    spec = load_spec(path)
    frame, _ = read_day(spec, spec.start_date)
    _, report = validate_raw(frame, spec)
    assert not report.passed and "(e.g. 'tenure')" in report.summary(), report.summary()
