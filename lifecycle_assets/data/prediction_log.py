"""Read what the service logged with `bentoml.monitor` and turn it into daily tables.

The monitor writes JSON lines per worker (`<log_dir>/<model>/data/data.<worker>.log`, rotated
files beside them). A day's table holds every prediction made that day (UTC), once: rows are
deduplicated by prediction id, because a retried write or a re-read rotated file must not count
a prediction twice.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

PREDICTION_ID = "prediction_id"
# Written by the service in UTC with its offset (the monitor's `timestamp` is naive local time).
PREDICTED_AT = "predicted_at"


def log_files(log_dir: Path, model_name: str) -> list[Path]:
    folder = Path(log_dir) / model_name / "data"
    return sorted(p for p in folder.glob("data.*.log*") if p.is_file()) if folder.exists() else []


def read_day(log_dir: Path, model_name: str, day: dt.date) -> pl.DataFrame:
    """Every logged prediction of `day`, one row per prediction id, oldest first."""
    return read_days(log_dir, model_name, day, day)


def read_days(log_dir: Path, model_name: str, first: dt.date, last: dt.date) -> pl.DataFrame:
    """Every logged prediction from `first` to `last` (UTC days, inclusive), one row per
    prediction id, oldest first; the log files are read once whatever the span."""
    files = log_files(log_dir, model_name)
    if not files:
        schema = {PREDICTION_ID: pl.String, PREDICTED_AT: pl.Datetime("us", "UTC")}
        return pl.DataFrame(schema=schema)
    frames = [pl.read_ndjson(path, infer_schema_length=None) for path in files]
    rows = pl.concat(frames, how="diagonal_relaxed").with_columns(
        pl.col(PREDICTED_AT).str.to_datetime(time_unit="us", time_zone="UTC")
    )
    return (
        rows.filter(pl.col(PREDICTED_AT).dt.date().is_between(first, last))
        .sort(PREDICTED_AT)
        .unique(subset=PREDICTION_ID, keep="first", maintain_order=True)
    )


def answered(rows: pl.DataFrame) -> pl.DataFrame:
    """Only the predictions that were returned to clients: shadow scores are logged beside
    them (`variant == "shadow"`) but are not traffic, so drift and live performance skip them."""
    if "variant" not in rows.columns:
        return rows
    return rows.filter(pl.col("variant").is_null() | (pl.col("variant") != "shadow"))
