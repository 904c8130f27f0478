"""Rows whose event timestamp cannot be read belong to no day, so no day's read sees them: they
were dropped without a trace while the run promoted with exit 0. Now they are quarantined with
their provenance, counted in the run summary, and refuse promotion (exit 3) until the file is
fixed. A file whose first timestamp has another format no longer turns the ISO rows after it
into nulls (polars infers one format from the first value): only that row is set aside.

Real Dagster instance and real MLflow registry, through `lifecycle run`'s own function."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lifecycle_assets.config import GateThresholds, Settings
from lifecycle_assets.data.event_time import timestamp_utc
from lifecycle_assets.data.fingerprint import fingerprint
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.preflight import preflight
from lifecycle_assets.defs import names
from lifecycle_assets.ml import gates
from lifecycle_assets.spec import load_spec
from lifecycle_assets_tests.test_data_gates_units import members_frame, write_csv, write_spec

# Line 1 is the header; data row i is line i + 2.
BAD_ROW = 300  # on 2026-03-03, the second day
US_DATE = "01/02/2026"


def _lines(csv: Path) -> list[str]:
    return csv.read_text().splitlines()


def _set_time(csv: Path, row: int, value: str) -> None:
    lines = _lines(csv)
    fields = lines[row + 1].split(",")
    fields[0] = value
    lines[row + 1] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")


def _repeat_header(csv: Path, row: int) -> None:
    lines = _lines(csv)
    lines.insert(row + 1, lines[0])
    csv.write_text("\n".join(lines) + "\n")


# (variant, edit of the written CSV, the row that loses its time (None: an added row), value)
VARIANTS = {
    "repeated header mid-file": (lambda csv: _repeat_header(csv, BAD_ROW), None, "event_time"),
    "one US date": (lambda csv: _set_time(csv, BAD_ROW, US_DATE), BAD_ROW, US_DATE),
    "empty timestamp": (lambda csv: _set_time(csv, BAD_ROW, ""), BAD_ROW, ""),
    # Read day first (as polars infers it) this is 2 March, a day of the data: misdated.
    "first row in another format": (
        lambda csv: _set_time(csv, 0, "02/03/2026 10:00"),
        0,
        "02/03/2026 10:00",
    ),
}


def _stored_rows(lake: Lake) -> pl.DataFrame:
    """Every row the lake holds for the model's days, accepted or quarantined."""
    frames = []
    for day in lake.batch_days():
        record = lake.batch(day)
        frame = lake.read_batch(record)
        if frame["event_time"].dtype == pl.String:
            frame = frame.with_columns(timestamp_utc("event_time", pl.String))
        frames.append(frame.select("event_time", pl.lit(day).alias("day")))
    return pl.concat(frames)


@pytest.mark.e2e
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_row_without_a_readable_timestamp_is_quarantined_counted_and_blocks_promotion(
    lifecycle_env: Settings, tmp_path: Path, variant: str
) -> None:
    from lifecycle_assets.cli.lifecycle import run_lifecycle

    edit, lost, value = VARIANTS[variant]
    frame = members_frame()
    csv = write_csv(frame, tmp_path / "members.csv")
    edit(csv)
    spec = write_spec(tmp_path, csv)
    spec_path = tmp_path / "members.yaml"

    # Preflight names the row once, by its time, not as bad values that quarantine a day.
    warnings = preflight(spec).warnings
    assert [w for w in warnings if "1 row(s) have no readable timestamp" in w], warnings
    assert not [w for w in warnings if "their days are quarantined" in w], warnings

    [summary] = run_lifecycle(str(spec_path), as_json=True)

    assert summary.exit_code == 3, summary.failure
    assert not summary.promoted and summary.champion_version is None
    assert summary.ingest.undated_rows == 1
    assert "1 row(s) without a readable timestamp quarantined" in summary.ingest.line("members")
    [gate] = [g for g in summary.gates if g["name"] == gates.QUARANTINE_GATE]
    assert not gate["passed"] and gate["actual"] == 1 and gate["threshold"] == 0
    assert "gates.max_undated_rows" in gate["description"]
    assert summary.failure.startswith(f"blocked by {gates.QUARANTINE_GATE}: 1 row(s) without")

    lake = Lake(lifecycle_env.lake_dir, lifecycle_env.quarantine_dir, "members")
    record = lake.undated()
    assert record["rows"] == 1 and record["examples"] == [value]
    assert (record["empty"], record["unreadable"]) == ((1, 0) if value == "" else (0, 1))
    assert record["source"] == str(csv)
    assert record["source_sha256"] == fingerprint(spec).source
    assert record["source_files"] == {str(csv): hashlib.sha256(csv.read_bytes()).hexdigest()}
    assert record["run_id"] and record["sha256"] in record["path"]
    kept = pl.read_parquet(record["path"])
    report = Path(record["path"]).with_suffix(".report.json")
    assert report.exists() and record["summary"] in report.read_text()
    assert kept.height == 1 and kept["event_time"].fill_null("").to_list() == [value]
    if lost is not None:  # the row is kept as written, every column
        original = pl.read_csv(tmp_path / "members.csv", infer_schema=False)[lost]
        assert kept.drop("event_time").row(0) == original.drop("event_time").row(0)

    # No row lost, none misdated: every other row is stored under its own day, once.
    stored = _stored_rows(lake)
    expected = frame if lost is None else frame.filter(pl.int_range(pl.len()) != lost)
    assert stored.height == expected.height
    assert sorted(stored["event_time"].dt.replace_time_zone(None).to_list()) == sorted(
        expected["event_time"].to_list()
    )
    assert (stored["event_time"].dt.date().cast(pl.String) == stored["day"]).all()


@pytest.mark.e2e
def test_a_rerun_keeps_one_quarantine_entry_and_fixing_the_file_clears_it(
    lifecycle_env: Settings, tmp_path: Path
) -> None:
    from lifecycle_assets.cli.lifecycle import run_lifecycle

    frame = members_frame()
    csv = write_csv(frame, tmp_path / "members.csv")
    good = csv.read_bytes()
    _set_time(csv, BAD_ROW, "01/02/2026")
    write_spec(tmp_path, csv)
    spec_path = str(tmp_path / "members.yaml")
    lake = Lake(lifecycle_env.lake_dir, lifecycle_env.quarantine_dir, "members")
    folder = lifecycle_env.quarantine_dir / "members" / "undated"

    first = run_lifecycle(spec_path, as_json=True)[0]
    # What the Dagster UI shows on each day the run read.
    with dg.DagsterInstance.get() as instance:
        key = names.key("members", names.RAW_BATCHES)
        metadata = instance.get_latest_materialization_event(key).asset_materialization.metadata
    assert metadata["undated_rows"].value == 1
    assert metadata["undated_quarantine"].value == lake.undated()["path"]
    again = run_lifecycle(spec_path, as_json=True)[0]
    assert (first.exit_code, again.exit_code) == (3, 3), again.failure
    assert again.ingest.undated_rows == 1 and again.ingest.skipped  # nothing read again
    assert len(list(folder.glob("*.parquet"))) == 1
    assert lake.undated()["rows"] == 1

    csv.write_bytes(good)
    fixed = run_lifecycle(spec_path, as_json=True)[0]
    assert fixed.exit_code == 0 and fixed.promoted, fixed.failure
    assert fixed.ingest.undated_rows == 0 and lake.undated() is None
    assert "without a readable timestamp" not in fixed.ingest.line("members")
    # The rows found before stay in quarantine as a record of what was set aside.
    assert len(list(folder.glob("*.parquet"))) == 1


def test_preflight_names_unreadable_timestamps_and_a_declared_format_reads_them(
    tmp_path: Path,
) -> None:
    """A day-first file reads with `timestamp_format`; without it, it is refused in one line
    naming the option instead of being dated by a format guessed from its first value."""
    frame = members_frame(days=3, rows_per_day=5).with_columns(
        pl.col("event_time").dt.strftime("%d/%m/%Y %H:%M")
    )
    csv = write_csv(frame, tmp_path / "members.csv")
    spec = write_spec(tmp_path, csv)
    report = preflight(spec)
    [error] = report.errors
    assert "no readable timestamp in 'event_time'" in error and "timestamp_format" in error

    path = tmp_path / "members.yaml"
    path.write_text(path.read_text().replace("timestamp: event_time\n", _DAY_FIRST))
    dated = load_spec(path)
    assert not preflight(dated).errors

    from lifecycle_assets.data.sources import read_day, undated_rows

    march_3, _ = read_day(dated, dt.date(2026, 3, 3))
    assert march_3.height == 5 and undated_rows(dated).is_empty()

    _set_time(csv, 2, "2026-03-02 10:00")  # ISO in a day-first file: not read, counted
    warnings = preflight(dated).warnings
    assert any("1 row(s) have no readable timestamp" in w for w in warnings), warnings
    assert undated_rows(dated).height == 1


_DAY_FIRST = "timestamp: event_time\ntimestamp_format: '%d/%m/%Y %H:%M'\n"


def test_max_undated_rows_lets_a_known_count_through_and_still_names_them() -> None:
    """A user who accepts a few rows of no day says so in the spec; the gate passes but its
    description still counts them."""
    quarantine = {"window_days": 6, "quarantined_days": [], "undated_rows": 2, "undated": "2 rows"}
    refused = gates.quarantined_share_within_limit(quarantine, GateThresholds())
    assert not refused.passed and (refused.actual, refused.threshold) == (2, 0)
    allowed = gates.quarantined_share_within_limit(quarantine, GateThresholds(max_undated_rows=2))
    assert allowed.passed and "2 row(s) of no day within the limit 2" in allowed.description


def test_draft_spec_of_a_day_first_file_declares_its_format_and_loads(tmp_path: Path) -> None:
    """The draft wrote `start_date: 02/03/2026` (the value's first ten characters), a spec that
    does not load, and no format, so that every time would have been unreadable."""
    from lifecycle_assets.data.draft import draft_spec

    frame = members_frame().with_columns(pl.col("event_time").dt.strftime("%d/%m/%Y %H:%M"))
    csv = write_csv(frame, tmp_path / "members.csv")
    text = draft_spec(csv, target="left")
    assert "timestamp_format: '%d/%m/%Y %H:%M'  # guess: '%m/%d/%Y %H:%M'" in text, text
    path = tmp_path / "draft.yaml"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.start_date == dt.date(2026, 3, 2)
    report = preflight(spec)
    assert not report.errors and not report.warnings, report.lines()
