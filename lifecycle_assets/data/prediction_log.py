"""Read what the service logged (`serving/prediction_log.py`) and turn it into daily tables.

Layout, shared with the writer: `<log_dir>/<model>/<YYYY-MM-DD>/<segment>.jsonl`, one segment per
writing process, one JSON object per line, the day being the UTC day of the row's `predicted_at`.
In team mode `<log_dir>` is on object storage and each replica's segments arrive there whole,
one immutable object per closed segment (`<segment>-<seq>.jsonl`, `serving/log_shipping.py`).
A day's table holds every prediction made that day once: rows are deduplicated by prediction id,
so a segment copied aside or read twice cannot count a prediction twice.

A line that is not a valid row (torn, not strict JSON, no prediction id or time) is skipped, not
fatal: one poison line must not stop a day's monitoring. Each is copied to
`<quarantine>/<model>/prediction_logs/<day>/<segment>.lines` with a report naming the file, the
line and the reason, and counted in the scan's result, so it is seen and can be repaired.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lifecycle_assets import storage
from lifecycle_assets.config import Settings
from lifecycle_assets.data import valid_json
from lifecycle_assets.data.lake import PREDICTION_LOGS, write_atomic

PREDICTION_ID = "prediction_id"
# Written by the service in UTC with its offset.
PREDICTED_AT = "predicted_at"
SEGMENT_SUFFIX = ".jsonl"
# An unterminated last line in a segment written to this recently may still be being written.
LIVE_SEGMENT_SECONDS = 60.0


def model_dir(log_dir: Path, model: str) -> Path:
    """The model's log folder; on object storage (collected logs, team mode) a UPath."""
    return (storage.path(log_dir) if storage.is_remote(log_dir) else Path(log_dir)) / model


def day_dir(log_dir: Path, model: str, day: dt.date) -> Path:
    """The folder of one model's rows predicted on `day` (UTC)."""
    return model_dir(log_dir, model) / day.isoformat()


def _day(name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(name)
    except ValueError:
        return None


def _folder_day(folder: Path) -> dt.date | None:
    return _day(folder.name)


def _in_span(day: dt.date | None, first: dt.date | None, last: dt.date | None) -> bool:
    return day is not None and (first is None or day >= first) and (last is None or day <= last)


def segment_files(
    log_dir: Path,
    model: str,
    first: dt.date | None = None,
    last: dt.date | None = None,
    *,
    suffixes: tuple[str, ...] = (SEGMENT_SUFFIX,),
) -> list[Path]:
    """The model's segment files of the days from `first` to `last` (inclusive; None: open),
    day by day, each day's sorted by name. `suffixes`: the closed segments by default; a
    service's own spool also holds the ones it is still writing (`traffic.SPOOL_SUFFIXES`).

    On object storage (team mode: segments shipped by each replica) through the storage door's
    listings, one per day folder.
    """
    root = model_dir(log_dir, model)
    if storage.is_remote(root):
        days = [name for name in storage.list_folders(root) if _in_span(_day(name), first, last)]
        return [
            storage.path(info.path)
            for name in days
            for info in storage.list_objects(root / name)
            if info.name.endswith(suffixes)
        ]
    if not root.is_dir():
        return []
    files = []
    for folder in sorted(root.iterdir()):
        if not _in_span(_folder_day(folder), first, last) or not folder.is_dir():
            continue
        found = (p for suffix in suffixes for p in folder.glob(f"*{suffix}"))
        files += sorted(p for p in found if p.is_file())
    return files


def logged_models(log_dir: Path) -> list[str]:
    """The models that have a prediction log under `log_dir` (local or object storage)."""
    if storage.is_remote(log_dir):
        return storage.list_folders(log_dir)
    root = Path(log_dir)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


class BadRow(ValueError):
    """A log line that is not a valid row; the message says why."""


def parse_row(line: bytes) -> dict[str, Any]:
    """One log line as a row; raises BadRow when it is not strict JSON or lacks its id or time."""
    try:
        row = valid_json.loads(line)
    except UnicodeDecodeError:
        raise BadRow("not UTF-8") from None
    except ValueError as error:
        raise BadRow(f"not valid JSON ({error})") from None
    if not isinstance(row, dict):
        raise BadRow(f"a JSON {type(row).__name__}, not an object")
    if not isinstance(row.get(PREDICTION_ID), str) or not row[PREDICTION_ID]:
        raise BadRow(f"no {PREDICTION_ID}")
    stamp = row.get(PREDICTED_AT)
    try:
        when = dt.datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadRow(f"{PREDICTED_AT} is not a timestamp with its UTC offset: {stamp!r}")
    return row


@dataclass(frozen=True)
class BadLine:
    """One skipped line: where it is and why it was skipped."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class SegmentScan:
    """One segment's valid lines (raw), its bad lines, and whether its tail is still being
    written (an unterminated last line in a live segment: neither a row nor bad yet)."""

    path: Path
    good: list[bytes] = field(default_factory=list)
    bad: list[tuple[BadLine, bytes]] = field(default_factory=list)
    pending_tail: bool = False


def scan_segment(path: Path) -> SegmentScan:
    """Split a segment into valid lines and bad ones (numbered from 1)."""
    scan = SegmentScan(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    unterminated = lines.pop()  # b"" when the file ends with a newline
    numbered = list(enumerate(lines, start=1))
    if unterminated:
        # A shipped segment (object storage) is closed before it is shipped: never live.
        live = not storage.is_remote(path) and (
            time.time() - path.stat().st_mtime < LIVE_SEGMENT_SECONDS
        )
        try:
            parse_row(unterminated)
            numbered.append((len(lines) + 1, unterminated))
        except BadRow as error:
            if live:
                scan.pending_tail = True
            else:
                reason = f"incomplete last line: {error}"
                scan.bad.append((BadLine(str(path), len(lines) + 1, reason), unterminated))
    for number, line in numbered:
        if not line.strip():
            continue
        try:
            parse_row(line)
        except BadRow as error:
            scan.bad.append((BadLine(str(path), number, str(error)), line))
            continue
        scan.good.append(line)
    return scan


def quarantine_lines(quarantine_dir: Path, model: str, scan: SegmentScan) -> Path | None:
    """Copy a segment's bad lines and their report under the quarantine (idempotent: the copy
    is rewritten only when the set of bad lines grew); returns the report's path."""
    if not scan.bad:
        return None
    # The quarantine may be on object storage (team profile): its path type is kept.
    folder = storage.path(quarantine_dir) / model / PREDICTION_LOGS / scan.path.parent.name
    report_path = folder / f"{scan.path.stem}.report.json"
    report = {
        "file": str(scan.path),
        "bad_lines": [{"line": b.line, "reason": b.reason} for b, _ in scan.bad],
    }
    text = json.dumps(report, indent=2)
    if report_path.exists() and report_path.read_text() == text:
        return report_path
    write_atomic(folder / f"{scan.path.stem}.lines", b"".join(raw + b"\n" for _, raw in scan.bad))
    write_atomic(report_path, text.encode())
    return report_path


_EMPTY = {PREDICTION_ID: pl.String, PREDICTED_AT: pl.Datetime("us", "UTC")}


# What a 64-bit integer column holds; wider integers are read as the floats they are scored as.
_MIN_INT, _MAX_INT = -(2**63), 2**63 - 1


def _flat(value: Any) -> Any:
    if type(value) is int and not _MIN_INT <= value <= _MAX_INT:
        # The service accepts integers of up to 300 digits and scores them as floats; as
        # integers, polars nulls them (strict=False) or refuses the whole day.
        try:
            return float(value)
        except OverflowError:  # never from the service; a hand-written line
            return math.copysign(math.inf, value)
    return json.dumps(value) if isinstance(value, dict | list) else value


def _rows(lines: list[bytes]) -> pl.DataFrame:
    """Valid lines as one frame, types inferred over every line.

    Rows whose types disagree (a number where other rows hold text, an object where others
    hold a number) must not stop the day: they are then built value by value, nested values
    kept as JSON text and each column cast to a type every row fits.
    """
    try:
        return pl.read_ndjson(io.BytesIO(b"\n".join(lines)), infer_schema_length=None)
    except pl.exceptions.PolarsError:  # also an integer wider than 128 bits
        rows = [{k: _flat(v) for k, v in valid_json.loads(line).items()} for line in lines]
        return pl.from_dicts(rows, infer_schema_length=None, strict=False)


@dataclass
class LogScan:
    """A span of days read: the rows (once per prediction id, oldest first), the segments read,
    the lines skipped and quarantined, and tails still being written."""

    rows: pl.DataFrame
    files: int
    bad: list[BadLine]
    pending_tails: int = 0
    quarantine_reports: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.rows.height} predictions from {self.files} log segment(s)"
        if self.bad:
            text += f"; {len(self.bad)} bad line(s) skipped and quarantined"
        return text


def scan_days(settings: Settings, model: str, first: dt.date, last: dt.date) -> LogScan:
    """Every valid logged prediction of `model` from `first` to `last` (UTC days, inclusive),
    one row per prediction id, oldest first; bad lines are quarantined and reported."""
    files = segment_files(settings.prediction_log_dir, model, first, last)
    good, bad, pending, reports = [], [], 0, []
    for path in files:
        scan = scan_segment(path)
        good += scan.good
        bad += [b for b, _ in scan.bad]
        pending += scan.pending_tail
        report = quarantine_lines(settings.quarantine_dir, model, scan)
        reports += [str(report)] if report else []
    if not good:
        return LogScan(pl.DataFrame(schema=_EMPTY), len(files), bad, pending, reports)
    # One frame over every segment: types are inferred once, across all of them.
    rows = _rows(good).with_columns(
        pl.col(PREDICTED_AT).str.to_datetime(time_unit="us", time_zone="UTC")
    )
    rows = (
        rows.filter(pl.col(PREDICTED_AT).dt.date().is_between(first, last))
        .sort(PREDICTED_AT)
        .unique(subset=PREDICTION_ID, keep="first", maintain_order=True)
    )
    return LogScan(rows, len(files), bad, pending, reports)


def read_days(settings: Settings, model: str, first: dt.date, last: dt.date) -> pl.DataFrame:
    """The rows of `scan_days` (bad lines are still quarantined)."""
    return scan_days(settings, model, first, last).rows


def read_day(settings: Settings, model: str, day: dt.date) -> pl.DataFrame:
    """Every logged prediction of `day`, one row per prediction id, oldest first."""
    return read_days(settings, model, day, day)


def logged_rows(
    paths: list[Path], contains: str = "", bad: list[str] | None = None
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each valid row of the given segments (bad lines skipped, and named in `bad` as
    `<path> line <n>: <why>` when given), optionally only lines that contain `contains`: a
    cheap filter before parsing, for lookups by id."""
    needle = contains.encode()
    for path in paths:
        for number, line in enumerate(_lines(path), start=1):
            if needle and needle not in line:
                continue
            try:
                yield path, parse_row(line.rstrip(b"\n"))
            except BadRow as error:
                if bad is not None:
                    bad.append(f"{path} line {number}: {error}")


def _lines(path: Path) -> Iterator[bytes]:
    """A segment's lines: streamed from a local disk, one read of a (closed) shipped object."""
    if storage.is_remote(path):
        yield from io.BytesIO(storage.read_bytes(path))  # split at "\n" only, as a file is
        return
    with path.open("rb") as handle:
        yield from handle


def answered(rows: pl.DataFrame) -> pl.DataFrame:
    """Only the predictions that were returned to clients: shadow scores are logged beside
    them (`variant == "shadow"`) but are not traffic, so drift and live performance skip them."""
    if "variant" not in rows.columns:
        return rows
    return rows.filter(pl.col("variant").is_null() | (pl.col("variant") != "shadow"))
