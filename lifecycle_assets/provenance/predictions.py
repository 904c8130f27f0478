"""Where a prediction was logged: the service's JSON-lines log, then the lake's daily tables.

The log is read first (it is what the service wrote; bad lines are skipped, see
`data/prediction_log.py`); the lake's daily prediction tables are the fallback once the log has
been removed. Each table is re-hashed as it is read: rows from a
table whose bytes changed are still shown, but marked with the mismatch.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lifecycle_assets import config, storage
from lifecycle_assets.config import Settings
from lifecycle_assets.data.lake import PREDICTION_LOGS, Lake, sha256_bytes
from lifecycle_assets.data.prediction_log import (
    PREDICTED_AT,
    PREDICTION_ID,
    logged_models,
    logged_rows,
    segment_files,
)
from lifecycle_assets.provenance.links import (
    BROKEN,
    MISSING,
    OK,
    PREDICTION,
    Link,
    hash_mismatch,
)
from lifecycle_assets.provenance.prediction_index import candidate_days, may_hold

# A logged row's outputs are these columns (`score` or `probability`, whichever the service
# wrote); its inputs are whatever is not a known output or bookkeeping column.
OUTPUT_COLUMNS = ("prediction", "score", "probability")
EXTRA_OUTPUTS = ("latency_ms",)
META_COLUMNS = (
    "prediction_id", "record_id", "model_name", "model_version", "variant", "shadow_of",
    "training_digest", "predicted_at", "timestamp", "request_id", "trace_id", "span_id",
)  # fmt: skip


@dataclass(frozen=True)
class PredictionTable:
    """One day's prediction table in the lake: `rows` is None when it cannot be read, and
    `problem` says why, or names a hash mismatch (the rows are then shown but not trusted)."""

    day: str
    path: str
    rows: pl.DataFrame | None
    problem: str = ""


def prediction_tables(lake: Lake) -> Iterator[PredictionTable]:
    """The model's daily prediction tables, each re-hashed; an unreadable one is named, not
    skipped."""
    for day in lake.daily_days(PREDICTION_LOGS):
        entry = lake.daily_entry(PREDICTION_LOGS, day) or {}
        path = entry["path"]
        if not storage.path(path).is_file():
            yield PredictionTable(day, path, None, f"file {path} does not exist")
            continue
        data = storage.read_bytes(path)
        mismatch = hash_mismatch(path, sha256_bytes(data), entry["sha256"])
        try:
            rows = pl.read_parquet(io.BytesIO(data))
        except pl.exceptions.PolarsError as error:
            yield PredictionTable(day, path, None, f"{mismatch or path} ({error})")
            continue
        yield PredictionTable(day, path, rows, mismatch)


def _every_segment(log_dir: Path, days: frozenset[str] | None = None) -> list[Path]:
    """Every model's segments that can hold rows of `days` (None: all): only those day folders
    are listed, so a lookup by UUIDv7 id costs the same however many days the logs span."""
    models = logged_models(log_dir)  # local, or the shipped segments on object storage
    first, last = (
        (dt.date.fromisoformat(min(days)), dt.date.fromisoformat(max(days)))
        if days
        else (None, None)
    )
    return [
        path
        for model in models
        for path in segment_files(log_dir, model, first, last)
        if may_hold(path, days)
    ]


@dataclass
class Found:
    """Where a prediction was logged, the shadow rows that mirror it, and any integrity problem."""

    row: dict[str, Any] | None = None
    where: str = ""
    shadows: list[dict[str, Any]] = field(default_factory=list)
    problem: str = ""
    # Logged lines that hold the id but are not valid rows (`<path> line <n>: <why>`).
    invalid_lines: list[str] = field(default_factory=list)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}


def _from_lake(settings: Settings, prediction_id: str) -> Found:
    """The first lake table, of any model, that holds `prediction_id`; if none does, the
    tables that fail their check are named, since one of them may have held it."""
    problems = []
    folders = sorted(p for p in settings.lake_dir.iterdir() if p.is_dir())
    for lake in (Lake(settings.lake_dir, settings.quarantine_dir, f.name) for f in folders):
        for table in prediction_tables(lake):
            rows = table.rows
            if rows is None:
                problems.append(table.problem)
                continue
            if "prediction_id" not in rows.columns:
                continue
            hit = rows.filter(pl.col("prediction_id") == prediction_id)
            if not hit.height:
                problems += [table.problem] if table.problem else []
                continue
            found = Found(_plain(hit.row(0, named=True)), table.path, problem=table.problem)
            if "shadow_of" in rows.columns:
                mirrors = rows.filter(pl.col("shadow_of") == prediction_id)
                found.shadows = [_plain(r) for r in mirrors.to_dicts()]
            return found
    return Found(problem="; ".join(problems))


def find_prediction(settings: Settings, prediction_id: str) -> Found:
    """The logged row of `prediction_id`, where it was found, and any shadow rows mirroring it."""
    found, shadows, bad = Found(), {}, []
    # A UUIDv7 id names its day: only that day's log folders (and neighbours) are read.
    days = candidate_days(prediction_id)
    segments = _every_segment(settings.prediction_log_dir, days)
    for path, row in logged_rows(segments, prediction_id, bad=bad):
        if row.get("prediction_id") == prediction_id and found.row is None:
            found = Found(row, str(path))
        elif row.get("shadow_of") == prediction_id:
            shadows[row["prediction_id"]] = row
    if found.row is None:
        if settings.lake_dir.exists():
            found = _from_lake(settings, prediction_id)
        if found.row is None:
            # A line holding the id that is not a valid row is not "no prediction": name it.
            found.invalid_lines = bad
        return found
    found.shadows = list(shadows.values())
    return found


# What a model that never answered has, so the columns are there either way.
_EMPTY = {PREDICTION_ID: pl.String, PREDICTED_AT: pl.Datetime("us", "UTC")}


def _bookkeeping(rows: pl.DataFrame, at: pl.Expr, problem: str = "") -> pl.DataFrame:
    """The bookkeeping columns as text (clients and tables type them differently), the time
    as UTC, and the problem of the table the rows came from."""
    text = [c for c in META_COLUMNS if c in rows.columns and c != PREDICTED_AT]
    return rows.select(
        *(pl.col(c).cast(pl.String) for c in text),
        at.alias(PREDICTED_AT),
        pl.lit(problem or None, pl.String).alias("problem"),
    )


def logged_predictions(
    settings: Settings, model: str
) -> tuple[pl.DataFrame, list[PredictionTable]]:
    """The bookkeeping columns of every prediction of `model`, once per id, read where
    `find_prediction` looks (the log first, then the lake), with each row's table `problem`;
    beside them, the lake tables that cannot be read, which may have held more."""
    parsed = pl.col(PREDICTED_AT).str.to_datetime(time_unit="us", time_zone="UTC")
    frames = [_bookkeeping(pl.DataFrame(schema=_EMPTY), pl.col(PREDICTED_AT))]
    # Only the bookkeeping of each valid row, as text: inputs are not needed here.
    logged = [
        {c: None if row.get(c) is None else str(row[c]) for c in META_COLUMNS}
        for _, row in logged_rows(segment_files(settings.prediction_log_dir, model))
    ]
    if logged:
        frame = pl.DataFrame(logged, schema={c: pl.String for c in META_COLUMNS})
        frames.append(_bookkeeping(frame, parsed))
    unreadable = []
    for table in prediction_tables(Lake(settings.lake_dir, settings.quarantine_dir, model)):
        if table.rows is None:
            unreadable.append(table)
        else:
            typed = pl.col(PREDICTED_AT).cast(pl.Datetime("us", "UTC"))
            frames.append(_bookkeeping(table.rows, typed, table.problem))
    rows = pl.concat(frames, how="diagonal_relaxed")
    return rows.unique(subset=PREDICTION_ID, keep="first", maintain_order=True), unreadable


def prediction_link(prediction_id: str, found: Found) -> Link:
    """The prediction as logged: time, inputs, outputs, and which alias and version answered."""
    row = found.row
    if row is None:
        reason = "no prediction with this id in the prediction logs or the lake"
        if found.invalid_lines:
            reason = (
                f"no valid prediction with this id; {len(found.invalid_lines)} logged line(s) "
                f"holding it are not valid rows: {found.invalid_lines[0]}"
            )
            return Link(PREDICTION, prediction_id, BROKEN, reason)
        if found.problem:
            reason += f"; prediction tables that fail their check: {found.problem}"
        return Link(PREDICTION, prediction_id, MISSING, reason)
    outputs = {k: row[k] for k in OUTPUT_COLUMNS if k in row}
    known = (*OUTPUT_COLUMNS, *EXTRA_OUTPUTS, *META_COLUMNS)
    inputs = {k: v for k, v in row.items() if k not in known}
    outputs.update({k: row[k] for k in EXTRA_OUTPUTS if row.get(k) is not None})
    details = {
        "predicted_at": row.get("predicted_at"),
        "model_name": row.get("model_name"),
        "model_version": str(row.get("model_version")),
        "variant": row.get("variant") or config.CHAMPION_ALIAS,
        "shadow_of": row.get("shadow_of"),
        "record_id": row.get("record_id"),
        "training_digest": row.get("training_digest") or "",
        "outputs": outputs,
        "inputs": inputs,
        "log": found.where,
        "shadowed_by": [
            {"prediction_id": s["prediction_id"], "model_version": str(s.get("model_version"))}
            for s in found.shadows
        ],
    }
    if found.problem:
        return Link(PREDICTION, prediction_id, BROKEN, found.problem, details)
    return Link(PREDICTION, prediction_id, OK, "", details)
