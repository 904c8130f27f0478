"""Check one landed label file, row by row, and quarantine what cannot be trusted.

A label file comes from outside (whoever learned the outcomes), so one bad row or one broken
file must not block every later `ground_truth` run: a file that cannot be read at all (not CSV
or Parquet, a missing column) is set aside whole; a bad row (empty id, a classifier label that
is neither of the spec's levels, a regressor label that is not a finite number, an unreadable
time, a CSV line with the wrong number of fields) is set aside alone and the file's other rows
are used. Either way the problem is named (file, line or row, reason) and a copy lands in the
quarantine folder with a report, so it is seen and can be fixed and landed again.

A classifier's labels are spelled as its training data spells the target: 0/1, or the spec's
`positive_label` and its negative (`Yes`/`No`). They are mapped to 0/1 by `schemas.map_target`,
the function training uses, so a label file and a training set never disagree on a level.

Clean files (the usual case) are checked in one vectorized pass; only a file with a problem is
walked row by row to find which rows are bad. A file is a local path or a URL of object storage
(`s3://...`): its bytes are read once through `storage`, the one door to stored files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lifecycle_assets import storage
from lifecycle_assets.data import valid_json
from lifecycle_assets.data.lake import sha256_bytes, write_atomic
from lifecycle_assets.data.prediction_log import PREDICTION_ID
from lifecycle_assets.ml.schemas import map_target
from lifecycle_assets.spec import ModelSpec

LABEL = "label"
LABELLED_AT = "labelled_at"
LABEL_SCHEMA: dict[str, pl.DataType] = {
    PREDICTION_ID: pl.String(),
    # Float for every task: 0/1 outcomes of classifiers and amounts of regressors alike.
    LABEL: pl.Float64(),
    LABELLED_AT: pl.Datetime("us", "UTC"),
}
CLASSIFIER = "binary_classification"
# What a check is told: a task name (labels must be 0/1 or numbers) or the spec, whose
# `positive_label` says how a classifier's labels are spelled.
Target = str | ModelSpec
# Keys of a CSV line that does not split into the header's fields: its fields and the reason.
_FIELDS, _RAGGED = "__fields__", "__ragged__"


@dataclass(frozen=True)
class LabelProblem:
    """What is wrong with a file (`where` empty) or with one of its rows ("line 4", "row 7")."""

    file: str
    where: str
    reason: str

    def __str__(self) -> str:
        where = f" {self.where}:" if self.where else ""
        return f"{self.file}:{where} {self.reason}"


@dataclass
class LabelCheck:
    """A file's valid labels (typed), its problems, and the raw values of its bad rows."""

    path: Path  # a local path, or a UPath naming an object (`storage.path`)
    labels: pl.DataFrame
    problems: list[LabelProblem] = field(default_factory=list)
    whole_file: bool = False
    bad_rows: list[dict[str, Any]] = field(default_factory=list)


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=LABEL_SCHEMA)


def _unreadable(path: Path, reason: str) -> LabelCheck:
    return LabelCheck(path, _empty(), [LabelProblem(str(path), "", reason)], whole_file=True)


def timestamps(column: pl.Series) -> pl.Series:
    """ISO strings or timestamps as UTC; a naive timestamp is UTC by contract."""
    if column.dtype == pl.String:
        return column.str.to_datetime(time_unit="us", time_zone="UTC")
    if column.dtype.time_zone is None:
        column = column.dt.replace_time_zone("UTC")
    return column.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def _task(target: Target) -> str:
    return target if isinstance(target, str) else target.task


def _levels_spec(target: Target) -> ModelSpec | None:
    """The spec when its labels are spelled by `positive_label`, else None (0/1 or numbers)."""
    if isinstance(target, str) or not target.is_classifier or target.label_levels is None:
        return None
    return target


def _mapped_labels(values: list[Any], spec: ModelSpec) -> tuple[list[Any], dict[int, str]]:
    """Labels as 0/1 by the spec's levels, and the reason per position of a value that is
    neither level. The whole column is mapped at once, as training maps its target, so an
    unset `negative_label` resolves the same way (the one other value)."""
    text = [None if value is None or value == "" else value for value in values]
    mapped, failures = map_target(pl.Series(LABEL, text, strict=False), spec)
    rule = failures[0]["check"] if failures else ""
    reasons = {
        index: f"column {LABEL!r} holds {value!r}, neither level of the spec ({rule})"
        for index, value in enumerate(text)
        if value is not None and mapped[index] is None
    }
    return [None if v is None else float(v) for v in mapped.to_list()], reasons


def _all_valid(raw: pl.DataFrame, target: Target) -> pl.DataFrame | None:
    """The typed labels when every row is valid (one vectorized pass), else None."""
    if any(raw[name].null_count() for name in LABEL_SCHEMA):
        return None
    if (spec := _levels_spec(target)) is not None:
        mapped, failures = map_target(raw[LABEL], spec)
        if failures:
            return None
        numeric = mapped.cast(pl.Float64)
    else:
        numeric = raw[LABEL].cast(pl.Float64, strict=False)
    classifier = _task(target) == CLASSIFIER
    valid = (numeric.is_in([0.0, 1.0]) if classifier else numeric.is_finite()).fill_null(False)
    stamps = raw[LABELLED_AT]
    if not valid.all() or not (stamps.dtype == pl.String or isinstance(stamps.dtype, pl.Datetime)):
        return None
    try:
        times = timestamps(stamps)
    except pl.exceptions.PolarsError:
        return None
    ids = raw[PREDICTION_ID].cast(pl.String)
    if (ids.str.len_chars() == 0).any() or times.null_count():
        return None
    return pl.DataFrame({PREDICTION_ID: ids, LABEL: numeric, LABELLED_AT: times})


def _label(value: Any, task: str) -> float:
    if value is None or value == "" or isinstance(value, bool):
        raise ValueError(f"column {LABEL!r} is empty")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"column {LABEL!r} holds {value!r}, not a number") from None
    if task == CLASSIFIER and number not in (0.0, 1.0):
        raise ValueError(f"column {LABEL!r} must hold only 0 and 1, found {str(value)!r}")
    if not math.isfinite(number):
        raise ValueError(f"column {LABEL!r} must hold finite numbers, found {str(value)!r}")
    return number


def _labelled_at(value: Any) -> dt.datetime:
    when = None
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, str) and value:
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            when = None
    if when is None:
        raise ValueError(f"column {LABELLED_AT!r} holds {value!r}, not a timestamp")
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _row_by_row(path: Path, rows: list[tuple[str, dict[str, Any]]], target: Target) -> LabelCheck:
    """Check each (where, values) row; bad rows become problems, the rest typed labels."""
    check = LabelCheck(path, _empty())
    good: dict[str, list[Any]] = {name: [] for name in LABEL_SCHEMA}
    task = _task(target)
    raw_labels = [None if _RAGGED in values else values.get(LABEL) for _, values in rows]
    level_reasons: dict[int, str] = {}
    if (spec := _levels_spec(target)) is not None:
        raw_labels, level_reasons = _mapped_labels(raw_labels, spec)
    for index, (where, values) in enumerate(rows):
        try:
            if ragged := values.get(_RAGGED):
                raise ValueError(ragged)
            identifier = values.get(PREDICTION_ID)
            if identifier is None or str(identifier) == "":
                raise ValueError(f"column {PREDICTION_ID!r} is empty")
            if index in level_reasons:
                raise ValueError(level_reasons[index])
            label = _label(raw_labels[index], task)
            when = _labelled_at(values.get(LABELLED_AT))
        except ValueError as error:
            check.problems.append(LabelProblem(str(path), where, str(error)))
            raw = values.get(_FIELDS, values)
            check.bad_rows.append({"where": where, "reason": str(error), "values": raw})
            continue
        good[PREDICTION_ID].append(str(identifier))
        good[LABEL].append(label)
        good[LABELLED_AT].append(when)
    check.labels = pl.DataFrame(good, schema=LABEL_SCHEMA)
    return check


def _missing_columns(path: Path, columns: list[str]) -> LabelCheck | None:
    missing = [name for name in LABEL_SCHEMA if name not in columns]
    if missing:
        return _unreadable(path, f"missing column(s) {missing}; it has {columns}")
    return None


def _check_csv(path: Path, data: bytes, task: Target) -> LabelCheck:
    try:
        # Ids stay strings: a hex id made only of digits must not become an integer.
        raw = pl.read_csv(io.BytesIO(data), schema_overrides={PREDICTION_ID: pl.String})
    except (pl.exceptions.PolarsError, OSError):
        raw = None
    if raw is not None:
        if problem := _missing_columns(path, raw.columns):
            return problem
        if (labels := _all_valid(raw, task)) is not None:
            return LabelCheck(path, labels)
    try:
        with io.StringIO(data.decode("utf-8"), newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            if problem := _missing_columns(path, header):
                return problem
            rows = []
            for fields in reader:
                where = f"line {reader.line_num}"
                if len(fields) != len(header):
                    reason = f"{len(fields)} field(s), the header has {len(header)}"
                    rows.append((where, {_FIELDS: fields, _RAGGED: reason}))
                else:
                    rows.append((where, dict(zip(header, fields, strict=True))))
    except (UnicodeDecodeError, csv.Error, OSError) as error:
        return _unreadable(path, f"cannot be read as csv: {error}")
    return _row_by_row(path, rows, task)


def _check_parquet(path: Path, data: bytes, task: Target) -> LabelCheck:
    try:
        raw = pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError) as error:
        return _unreadable(path, f"cannot be read as parquet: {error}")
    if problem := _missing_columns(path, raw.columns):
        return problem
    if (labels := _all_valid(raw, task)) is not None:
        return LabelCheck(path, labels)
    named = raw.select(*LABEL_SCHEMA).to_dicts()
    return _row_by_row(path, [(f"row {i}", row) for i, row in enumerate(named, start=1)], task)


def check_label_file(path: storage.Location, task: Target = CLASSIFIER) -> LabelCheck:
    """One file's valid labels (0/1 for a classifier) and every problem found in it; `path`
    is a local path or an object's URL (`s3://bucket/labels.csv`).

    `task` is the model's spec, or just its task name when the labels are 0/1 or numbers.
    """
    location = storage.path(path)
    try:
        data = location.read_bytes()
    except FileNotFoundError:
        return _unreadable(location, "no such file or object")
    except IsADirectoryError:
        return _unreadable(location, "a folder, not a file")
    return check_label_data(location, data, task)


def check_label_data(path: Path, data: bytes, task: Target = CLASSIFIER) -> LabelCheck:
    """`check_label_file` on bytes already read from `path` (which names them and, by its
    suffix, says how they are written): what is checked is exactly what gets landed."""
    if path.suffix.lower() == ".csv":
        return _check_csv(path, data, task)
    return _check_parquet(path, data, task)


def quarantine(check: LabelCheck, folder: Path) -> Path | None:
    """Copy what `check` found bad into `folder` with a report; returns the report's path.

    Named by the file's name and content hash, so a re-run writes nothing new and a fixed
    file landed under the same name gets its own entry.
    """
    if not check.problems:
        return None
    folder = storage.path(folder)
    data = check.path.read_bytes() if check.path.exists() else b""
    name = f"{check.path.stem}-{sha256_bytes(data)[:12]}"
    report_path = folder / f"{name}.report.json"
    if report_path.exists():
        return report_path
    if check.whole_file:
        write_atomic(folder / f"{name}{check.path.suffix}", data)
    else:
        lines = "".join(valid_json.dumps(row) + "\n" for row in check.bad_rows)
        write_atomic(folder / f"{name}.rows.jsonl", lines.encode())
    report = {
        "file": str(check.path),
        "sha256": sha256_bytes(data),
        "whole_file": check.whole_file,
        "problems": [{"where": p.where, "reason": p.reason} for p in check.problems],
        "rows_kept": check.labels.height,
    }
    write_atomic(report_path, valid_json.dumps(report).encode())
    return report_path
