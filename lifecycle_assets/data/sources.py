"""Read one day of raw rows from the spec's source: the simulator, or the user's files.

User sources are a CSV or Parquet file, a folder of them, or a glob, at a local path or any URL
polars/fsspec can open. A folder in object storage (an `s3://` prefix, the landing folder of team
mode) is listed and read through the storage door, so it reaches the endpoint of the settings.
The day's rows are those whose event timestamp falls on that day (UTC).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import polars as pl

from lifecycle_assets import storage
from lifecycle_assets.data.event_time import timestamp_utc
from lifecycle_assets.data.simulator import ROWS_PER_DAY, simulate_day
from lifecycle_assets.spec import SNAPSHOT_TIMESTAMP, ModelSpec

_SUFFIXES = (".csv", ".parquet")


def is_remote_folder(uri: str) -> bool:
    """An object-storage prefix holding the source's files (not one file, not a glob)."""
    return storage.is_remote(uri) and "*" not in uri and not uri.lower().endswith(_SUFFIXES)


def not_utf8_header(columns: list[str]) -> str | None:
    """Why a header read as UTF-8 is not text (a UTF-16 file: every name holds NUL bytes, so
    every column would be "missing"); None for a readable header."""
    if any("\x00" in column for column in columns):
        return "not UTF-8 text (NUL bytes in the header: UTF-16?)"
    return None


def source_format(spec: ModelSpec) -> str:
    if spec.source.format:
        return spec.source.format
    uri = spec.source.uri.lower()
    for suffix in ("parquet", "csv"):
        if uri.endswith(f".{suffix}") or uri.endswith(f"*.{suffix}"):
            return suffix
    path = Path(spec.source.uri)
    for suffix in ("parquet", "csv"):
        if path.is_dir() and any(path.glob(f"*.{suffix}")):
            return suffix
        if is_remote_folder(spec.source.uri) and storage.list_objects(
            spec.source.uri, f".{suffix}"
        ):
            return suffix
    raise ValueError(
        f"cannot tell the format of source {spec.source.uri!r}: set source.format to csv or parquet"
    )


def scan(uri: str | Path | io.BytesIO, fmt: str) -> pl.LazyFrame:
    """A lazy scan of source files (a path, a glob or a file's bytes) in the spec's format."""
    if fmt == "parquet":
        return pl.scan_parquet(uri)
    # Every column is read as text and typed by the validation step, so that a bad value is
    # reported with its row instead of failing the read.
    return pl.scan_csv(uri, infer_schema=False)


def _read_remote_folder(uri: str, fmt: str) -> pl.LazyFrame:
    """Every `fmt` file of an object-storage prefix, read through the storage door."""
    objects = storage.list_objects(uri, f".{fmt}")
    if not objects:
        raise FileNotFoundError(f"no .{fmt} file in {uri}")
    frames = [scan(io.BytesIO(storage.read_bytes(info.path)), fmt) for info in objects]
    return pl.concat(frames, how="vertical")


def _scan(spec: ModelSpec) -> pl.LazyFrame:
    fmt = source_format(spec)
    uri = spec.source.uri
    if is_remote_folder(uri):
        rows = _read_remote_folder(uri, fmt)
    else:
        if Path(uri).is_dir():
            uri = str(Path(uri) / f"*.{fmt}")
        rows = scan(uri, fmt)
    if spec.is_snapshot:
        # No event times: every row belongs to the snapshot's one day.
        day = dt.datetime.combine(spec.start_date, dt.time(), tzinfo=dt.UTC)
        rows = rows.with_columns(pl.lit(day, pl.Datetime("us", "UTC")).alias(SNAPSHOT_TIMESTAMP))
    return rows


def event_time(spec: ModelSpec, schema: pl.Schema) -> pl.Expr:
    """The UTC event time of each row of a file source (null where it cannot be read)."""
    if spec.timestamp not in schema:
        raise ValueError(f"source {spec.source.uri!r} has no timestamp column {spec.timestamp!r}")
    return timestamp_utc(spec.timestamp, schema[spec.timestamp], spec.timestamp_format)


def read_day(spec: ModelSpec, day: dt.date) -> tuple[pl.DataFrame, str]:
    """The raw rows of `day` and the URI they came from."""
    if spec.source.is_simulator:
        frame = simulate_day(day, **spec.source.simulator)
        return frame, f"{spec.source.uri}?day={day.isoformat()}"
    scan = _scan(spec)
    ts = event_time(spec, scan.collect_schema())
    frame = scan.filter(ts.dt.date() == day).collect()
    return frame, spec.source.uri


def undated_rows(spec: ModelSpec) -> pl.DataFrame:
    """The rows of a file source whose event timestamp is empty or cannot be read: they belong
    to no day, so no day's read sees them (`data.ingest.quarantine_undated` keeps them). None
    for the simulator and a snapshot, whose rows all have a time."""
    if spec.source.is_simulator or spec.is_snapshot:
        return pl.DataFrame()
    scan = _scan(spec)
    return scan.filter(event_time(spec, scan.collect_schema()).is_null()).collect()


def days_with_rows(spec: ModelSpec, days: list[str]) -> set[str]:
    """Which of `days` (ISO dates) hold at least one row, in one pass over the source.

    Asked before launching a run, so that a calendar gap gets no run: the simulator writes
    `rows_per_day` rows every day (no day to generate to know it), and a file source is scanned
    once for its days instead of once per day.
    """
    if spec.source.is_simulator:
        rows = int(spec.source.simulator.get("rows_per_day", ROWS_PER_DAY))
        return set(days) if rows > 0 else set()
    scan = _scan(spec)
    ts = event_time(spec, scan.collect_schema())
    wanted = [dt.date.fromisoformat(day) for day in days]
    present = (
        scan.select(ts.dt.date().alias("day"))
        .filter(pl.col("day").is_in(wanted))
        .unique()
        .collect()
    )
    return {day.isoformat() for day in present["day"].to_list()}


def read_source(spec: ModelSpec) -> pl.DataFrame:
    """Every row of a file-based source (text columns for CSV), for preflight and drafting."""
    return _scan(spec).collect()


def last_day(spec: ModelSpec) -> dt.date | None:
    """The newest UTC day in the source's event timestamps; None for the simulator or when the
    source has no readable timestamp (the window then ends today)."""
    if spec.source.is_simulator:
        return None
    rows = _scan(spec)
    schema = rows.collect_schema()
    if spec.timestamp not in schema:
        return None
    latest = rows.select(event_time(spec, schema).max()).collect()
    value = latest.item()
    return value.date() if value is not None else None
