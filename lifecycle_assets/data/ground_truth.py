"""Labels that arrive after the prediction: read them from a landing folder, or simulate them.

A label is known only days or months after a loan is granted, so it cannot travel with the
prediction. Whoever learns the outcome drops a file into `<landing>/<model>/labels/` (Parquet
or CSV) with one row per labelled prediction: `prediction_id`, `label` (0/1) and `labelled_at`
(UTC). A day's ground truth is what ARRIVED that day, by `labelled_at`, so re-reading the folder
later gives the same answer for a past day. A prediction labelled twice keeps its last label:
corrections are how label pipelines fix mistakes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from lifecycle_assets.data.lake import canonical_parquet, sha256_bytes, write_atomic
from lifecycle_assets.data.prediction_log import PREDICTED_AT, PREDICTION_ID

GROUND_TRUTH = "ground_truth"  # lake kind of the daily tables
LABEL = "label"
LABELLED_AT = "labelled_at"
LABEL_SCHEMA: dict[str, pl.DataType] = {
    PREDICTION_ID: pl.String(),
    # Float for every task: 0/1 outcomes of classifiers and amounts of regressors alike.
    LABEL: pl.Float64(),
    LABELLED_AT: pl.Datetime("us", "UTC"),
}
SUFFIXES = (".parquet", ".csv")


class LabelFileError(ValueError):
    """A landed label file that cannot be trusted; the message names the file and column."""


def labels_folder(landing_dir: Path, model_name: str) -> Path:
    return Path(landing_dir) / model_name / "labels"


def label_files(folder: Path) -> list[Path]:
    """Label files in name order, which breaks ties between labels stamped at the same time."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def _timestamps(column: pl.Series) -> pl.Series:
    """ISO strings or timestamps as UTC; a naive timestamp is UTC by contract."""
    if column.dtype == pl.String:
        return column.str.to_datetime(time_unit="us", time_zone="UTC")
    if column.dtype.time_zone is None:
        column = column.dt.replace_time_zone("UTC")
    return column.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def _utc(column: pl.Series, path: Path) -> pl.Series:
    dtype = column.dtype
    if dtype != pl.String and not isinstance(dtype, pl.Datetime):
        raise LabelFileError(
            f"{path}: column {LABELLED_AT!r} has type {dtype}, expected a timestamp"
        )
    try:
        return _timestamps(column)
    except pl.exceptions.PolarsError as error:
        raise LabelFileError(
            f"{path}: column {LABELLED_AT!r} is not a timestamp: {error}"
        ) from None


def read_label_file(path: Path, task: str = "binary_classification") -> pl.DataFrame:
    """One landed file as typed labels; raises LabelFileError naming the file and the column.

    Classifier labels must be 0 or 1, regressor labels finite numbers.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            # Ids stay strings: a hex id made only of digits must not become an integer.
            raw = pl.read_csv(path, schema_overrides={PREDICTION_ID: pl.String})
        else:
            raw = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise LabelFileError(f"{path}: cannot be read as {path.suffix[1:]}: {error}") from None
    missing = [name for name in LABEL_SCHEMA if name not in raw.columns]
    if missing:
        raise LabelFileError(f"{path}: missing column(s) {missing}; it has {raw.columns}")
    for name in (PREDICTION_ID, LABEL, LABELLED_AT):
        nulls = raw[name].null_count()
        if nulls:
            raise LabelFileError(f"{path}: column {name!r} has {nulls} empty value(s)")
    # Through floats, so that 0.5 is refused instead of truncated to 0, and "yes" is refused.
    numeric = raw[LABEL].cast(pl.Float64, strict=False)
    classifier = task == "binary_classification"
    valid = (numeric.is_in([0.0, 1.0]) if classifier else numeric.is_finite()).fill_null(False)
    if not valid.all():
        bad = raw[LABEL].filter(~valid).cast(pl.String).unique().sort().head(5).to_list()
        expected = "only 0 and 1" if classifier else "finite numbers"
        raise LabelFileError(f"{path}: column {LABEL!r} must hold {expected}, found {bad}")
    return pl.DataFrame(
        {
            PREDICTION_ID: raw[PREDICTION_ID].cast(pl.String),
            LABEL: numeric,
            LABELLED_AT: _utc(raw[LABELLED_AT], path),
        }
    )


def latest_labels(labels: pl.DataFrame) -> pl.DataFrame:
    """One row per prediction id: the last label to arrive (input order breaks ties)."""
    return (
        labels.with_row_index("_order")
        .sort(LABELLED_AT, "_order")
        .unique(subset=PREDICTION_ID, keep="last", maintain_order=True)
        .drop("_order")
    )


def arrivals(
    folder: Path, day: dt.date, task: str = "binary_classification"
) -> tuple[pl.DataFrame, list[Path]]:
    """The labels that arrived on `day` (UTC) and the files they came from."""
    frames, sources = [], []
    for path in label_files(folder):
        arrived = read_label_file(path, task).filter(pl.col(LABELLED_AT).dt.date() == day)
        if arrived.height:
            frames.append(arrived)
            sources.append(path)
    if not frames:
        return pl.DataFrame(schema=LABEL_SCHEMA), []
    return latest_labels(pl.concat(frames)), sources


def read_labels(folder: Path, day: dt.date) -> pl.DataFrame:
    """The labels that arrived on `day`, one per prediction id (the last one wins)."""
    return arrivals(folder, day)[0]


def write_delayed_labels(
    predictions: pl.DataFrame,
    truth: pl.DataFrame,
    *,
    record_id_column: str,
    label_column: str,
    delay: dt.timedelta,
    out_dir: Path,
    fraction: float = 1.0,
    seed: int = 0,
) -> list[Path]:
    """Play the labelling side: land labels for logged predictions `delay` after each was made.

    `predictions` are prediction-log rows (`prediction_id`, `record_id`, `predicted_at`);
    `truth` holds the real outcome per record id (e.g. a simulated batch keyed by
    `application_id` with its `default` column). Predictions whose record is unknown or whose
    outcome is missing get no label; with `fraction` < 1 a seeded random share of the rest
    never gets one either, as in production. One file per arrival day, named by its content so
    that writing the same labels twice is harmless and different batches never overwrite.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    if delay < dt.timedelta(0):
        raise ValueError(f"labels cannot arrive before the prediction: delay is {delay}")
    for frame, columns in (
        (predictions, (PREDICTION_ID, "record_id", PREDICTED_AT)),
        (truth, (record_id_column, label_column)),
    ):
        if missing := [c for c in columns if c not in frame.columns]:
            raise ValueError(f"missing column(s) {missing}; the frame has {frame.columns}")
    outcomes = (
        truth.select(
            pl.col(record_id_column).cast(pl.String).alias("record_id"),
            pl.col(label_column).cast(pl.Float64).alias(LABEL),
        )
        .drop_nulls()
        .unique(subset="record_id", keep="last", maintain_order=True)
    )
    labelled = (
        predictions.select(
            pl.col(PREDICTION_ID).cast(pl.String),
            pl.col("record_id").cast(pl.String),
            # The log's `predicted_at`, whether read raw (ISO strings) or from the lake.
            _timestamps(predictions[PREDICTED_AT]).alias(PREDICTED_AT),
        )
        .join(outcomes, on="record_id", how="inner", maintain_order="left")
        .select(PREDICTION_ID, LABEL, (pl.col(PREDICTED_AT) + delay).alias(LABELLED_AT))
    )
    keep = np.random.default_rng(seed).random(labelled.height) < fraction
    labelled = labelled.filter(pl.Series(keep)).sort(LABELLED_AT, PREDICTION_ID)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (day,), rows in labelled.group_by(pl.col(LABELLED_AT).dt.date(), maintain_order=True):
        data = canonical_parquet(rows)
        path = out_dir / f"labels-{day}-{sha256_bytes(data)[:12]}.parquet"
        write_atomic(path, data)  # the reader ignores the `.partial` file it writes first
        written.append(path)
    return written
