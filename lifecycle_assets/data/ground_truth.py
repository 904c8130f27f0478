"""Labels that arrive after the prediction: read them from a landing folder, or simulate them.

A label is known only days or months after a loan is granted, so it cannot travel with the
prediction. Whoever learns the outcome drops a file into `<landing>/<model>/labels/` (Parquet
or CSV) with one row per labelled prediction: `prediction_id`, `label` (0/1, or the target's own
spelling when the spec sets `positive_label`) and `labelled_at` (UTC). A day's ground truth is
what ARRIVED that day, by `labelled_at`, so re-reading the folder later gives the same answer
for a past day. A prediction labelled twice keeps its last label:
corrections are how label pipelines fix mistakes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from lifecycle_assets import storage
from lifecycle_assets.data.label_files import (
    LABEL,
    LABEL_SCHEMA,
    LABELLED_AT,
    LabelCheck,
    LabelProblem,
    Target,
    check_label_file,
    quarantine,
    timestamps,
)
from lifecycle_assets.data.lake import canonical_parquet, sha256_bytes, write_atomic
from lifecycle_assets.data.prediction_log import PREDICTED_AT, PREDICTION_ID

__all__ = ["LABEL", "LABELLED_AT", "LABEL_SCHEMA", "LabelProblem"]

GROUND_TRUTH = "ground_truth"  # lake kind of the daily tables
SUFFIXES = (".parquet", ".csv")


class LabelFileError(ValueError):
    """A landed label file that cannot be trusted; the message names the file, line and reason."""


def labels_folder(landing_dir: Path, model_name: str) -> Path:
    """A model's label landing folder, on a local disk or the team's object storage."""
    return storage.path(landing_dir) / model_name / "labels"


def labels_quarantine(quarantine_dir: Path, model_name: str) -> Path:
    """Where bad label files and rows of a model are copied, beside its quarantined batches."""
    return storage.path(quarantine_dir) / model_name / "labels"


def label_files(folder: Path) -> list[Path]:
    """Label files in name order, which breaks ties between labels stamped at the same time."""
    folder = storage.path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def read_label_file(path: storage.Location, task: Target = "binary_classification") -> pl.DataFrame:
    """One file (a local path or an object's URL) as typed labels, all or nothing: raises
    LabelFileError naming the file and every problem (a missing file or object among them).
    The `ground_truth` asset uses `arrivals`, which quarantines instead.

    Classifier labels must be 0 or 1 (or the spec's levels, given the spec), regressor labels
    finite numbers.
    """
    return labels_or_raise(check_label_file(path, task))


def labels_or_raise(check: LabelCheck) -> pl.DataFrame:
    """The check's labels when it found no problem; else LabelFileError naming the first
    problems (file, line or row, reason) in one line."""
    if check.problems:
        more = len(check.problems) - 5
        rest = f"; and {more} more problem(s)" if more > 0 else ""
        raise LabelFileError("; ".join(str(p) for p in check.problems[:5]) + rest)
    return check.labels


def latest_labels(labels: pl.DataFrame) -> pl.DataFrame:
    """One row per prediction id: the last label to arrive (input order breaks ties)."""
    return (
        labels.with_row_index("_order")
        .sort(LABELLED_AT, "_order")
        .unique(subset=PREDICTION_ID, keep="last", maintain_order=True)
        .drop("_order")
    )


# True where a prediction's label was stamped before the prediction: not used, counted.
PREMATURE = "premature_label"


def set_aside_premature(joined: pl.DataFrame) -> pl.DataFrame:
    """Predictions joined with their labels (`predicted_at`, `labelled_at`), a label stamped
    before its prediction nulled and flagged in `PREMATURE`; `labelled_at` dropped.

    Such a label names an outcome nobody could have known yet (a wrong clock, a wrong id in a
    label file): scoring it would be scoring with the future. It counts as not arrived, and
    every join that uses labels counts and reports the flags, never using them in silence.
    """
    early = (pl.col(LABELLED_AT) < pl.col(PREDICTED_AT)).fill_null(False)
    return (
        joined.with_columns(early.alias(PREMATURE))
        .with_columns(pl.when(pl.col(PREMATURE)).then(None).otherwise(pl.col(LABEL)).alias(LABEL))
        .drop(LABELLED_AT)
    )


@dataclass
class Arrivals:
    """The labels that arrived on a day, the files they came from, and every problem met
    in the folder's files (each bad file or row skipped and, when asked, quarantined)."""

    labels: pl.DataFrame
    sources: list[Path]
    problems: list[LabelProblem] = field(default_factory=list)
    quarantined: list[Path] = field(default_factory=list)


def arrivals(
    folder: Path,
    day: dt.date,
    task: Target = "binary_classification",
    quarantine_to: Path | None = None,
) -> Arrivals:
    """The labels that arrived on `day` (UTC): bad files and rows are skipped and named, and
    copied to `quarantine_to` with a report when given, so one bad file never blocks the rest.
    Given the spec as `task`, a classifier's labels may be spelled as its `positive_label`."""
    frames, sources, problems, reports = [], [], [], []
    for path, check in _checked_files(folder, task):
        problems += check.problems
        if quarantine_to is not None and (report := quarantine(check, quarantine_to)):
            reports.append(report)
        arrived = check.labels.filter(pl.col(LABELLED_AT).dt.date() == day)
        if arrived.height:
            frames.append(arrived)
            sources.append(path)
    labels = latest_labels(pl.concat(frames)) if frames else pl.DataFrame(schema=LABEL_SCHEMA)
    return Arrivals(labels, sources, problems, reports)


def _checked_files(folder: Path, task: Target) -> Iterator[tuple[Path, LabelCheck]]:
    """Each label file of `folder` with its check, named by its own location: a folder on
    object storage is read through a local copy (polars and csv read local files), and what
    is reported, quarantined and recorded as a source names the stored object, not the copy."""
    remote = storage.path(folder)
    with storage.local_folder(remote) as local:
        for path in label_files(local):
            check = check_label_file(path, task)
            if storage.is_remote(remote):
                stored = remote / path.name
                problems = [replace(p, file=str(stored)) for p in check.problems]
                check, path = replace(check, path=stored, problems=problems), stored
            yield path, check


def read_labels(folder: Path, day: dt.date) -> pl.DataFrame:
    """The labels that arrived on `day`, one per prediction id (the last one wins); all or
    nothing: raises LabelFileError naming every bad file or row (nothing is quarantined)."""
    found = arrivals(folder, day)
    if found.problems:
        raise LabelFileError("; ".join(str(p) for p in found.problems[:5]))
    return found.labels


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
    never gets one either, as in production. Outcomes are written as the data spells them
    (0/1, or `Yes`/`No` for a spec with `positive_label`). One file per arrival day, named by
    its content so that writing the same labels twice is harmless and different batches never
    overwrite.
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
    spelled = truth[label_column].dtype
    as_written = not (spelled.is_numeric() or spelled == pl.Boolean)
    outcomes = (
        truth.select(
            pl.col(record_id_column).cast(pl.String).alias("record_id"),
            pl.col(label_column).cast(pl.String if as_written else pl.Float64).alias(LABEL),
        )
        .drop_nulls()
        .unique(subset="record_id", keep="last", maintain_order=True)
    )
    labelled = (
        predictions.select(
            pl.col(PREDICTION_ID).cast(pl.String),
            pl.col("record_id").cast(pl.String),
            # The log's `predicted_at`, whether read raw (ISO strings) or from the lake.
            timestamps(predictions[PREDICTED_AT]).alias(PREDICTED_AT),
        )
        .join(outcomes, on="record_id", how="inner", maintain_order="left")
        .select(PREDICTION_ID, LABEL, (pl.col(PREDICTED_AT) + delay).alias(LABELLED_AT))
    )
    keep = np.random.default_rng(seed).random(labelled.height) < fraction
    labelled = labelled.filter(pl.Series(keep)).sort(LABELLED_AT, PREDICTION_ID)
    # A local folder or the team's object storage: storage.write_atomic makes local folders.
    out_dir = storage.path(out_dir)
    written = []
    for (day,), rows in labelled.group_by(pl.col(LABELLED_AT).dt.date(), maintain_order=True):
        data = canonical_parquet(rows)
        path = out_dir / f"labels-{day}-{sha256_bytes(data)[:12]}.parquet"
        write_atomic(path, data)  # the reader ignores the `.partial` file it writes first
        written.append(path)
    return written
