"""Read a source once before anything is ingested and say, in a few lines, whether the spec fits.

`lifecycle preflight` prints the report; `lifecycle run` prints it first and stops on an error
(a source with no rows, no timestamp column, a target the spec cannot map to 0/1) before
anything is written. Warnings are what ingest would quarantine or the gates would refuse, each
with the spec option that changes it.
"""

from __future__ import annotations

import csv
import difflib
from collections import Counter
from pathlib import Path

import polars as pl

from lifecycle_assets.data import event_time
from lifecycle_assets.data.preflight_fit import check_fit
from lifecycle_assets.data.preflight_report import PreflightError, PreflightReport
from lifecycle_assets.data.sources import not_utf8_header, read_source, source_format
from lifecycle_assets.ml.training import estimator_problem
from lifecycle_assets.spec import ModelSpec, label_text

BINARY_TEXT = {"0", "1"}

__all__ = ["PreflightError", "PreflightReport", "closest", "preflight"]


def closest(name: str, candidates: list[str]) -> str | None:
    """The candidate spelled most like `name` (case-insensitive), if any is close."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _text(series: pl.Series) -> pl.Series:
    if series.dtype == pl.Boolean:
        return series.replace_strict({True: "True", False: "False"}, return_dtype=pl.String)
    if series.dtype.is_float():
        return pl.Series(
            series.name,
            [None if v is None or v != v else label_text(v) for v in series.to_list()],
            dtype=pl.String,
        )
    return series.cast(pl.String)


def _read(spec: ModelSpec, report: PreflightReport) -> pl.DataFrame | None:
    try:
        source_format(spec)
        frame = read_source(spec)
    except pl.exceptions.NoDataError:
        report.add("error", "the source file is empty: no header, no rows")
        return None
    except (OSError, ValueError, pl.exceptions.PolarsError) as error:
        where = _ragged_line(spec) if "more fields" in str(error) else None
        report.add(
            "error",
            f"cannot read the source: {str(error).splitlines()[0]}"
            + (f" ({where} has more fields than its header)" if where else ""),
        )
        return None
    if frame.height == 0:
        report.add("error", f"the source has a header ({len(frame.columns)} columns) but no rows")
        return None
    if (problem := not_utf8_header(frame.columns)) is not None:
        report.add("error", f"the source is {problem}")
        return None
    return frame


def _ragged_line(spec: ModelSpec) -> str | None:
    """`<file> line <n>`: the first row of a local CSV source with more fields than its header
    (polars names no line); None when the source is not local CSV files."""
    root = Path(spec.source.uri)
    files = sorted(root.glob("*.csv")) if root.is_dir() else [root] if root.is_file() else []
    for path in files:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            rows = csv.reader(handle)
            width = len(next(rows, []))
            for row in rows:
                if len(row) > width:
                    return f"{path} line {rows.line_num}"
    return None


def _columns(spec: ModelSpec, frame: pl.DataFrame, report: PreflightReport) -> None:
    wanted = [spec.timestamp, spec.target, *(f.name for f in spec.features)]
    if spec.id_column:
        wanted.append(spec.id_column)
    present = frame.columns
    for column in present:
        # polars reads a name the header repeats as `<name>_duplicated_<n>`: which copy holds
        # the data is unknowable, and the first would be used without a word.
        original, sep, number = column.rpartition("_duplicated_")
        if sep and number.isdigit() and original in present:
            level = "error" if original in wanted else "warning"
            report.add(level, f"column {original!r} appears more than once in the header")
    for name in wanted:
        if name in present:
            continue
        guess = closest(name, [c for c in present if c not in wanted])
        hint = f" (closest: {guess!r})" if guess else f"; columns are {present}"
        level = "error" if name == spec.timestamp else "warning"
        consequence = (
            "no day can be told" if name == spec.timestamp else "every batch would be quarantined"
        )
        report.add(level, f"column {name!r} is missing{hint}: {consequence}")


def _target(spec: ModelSpec, frame: pl.DataFrame, report: PreflightReport) -> float | None:
    """Describe the target and what the spec makes of it; the positive rate if known."""
    if spec.target not in frame.columns:
        return None
    text = _text(frame[spec.target])
    counts = Counter(v for v in text.to_list() if v is not None)
    nulls = text.null_count()
    shown = ", ".join(f"{v!r} ({n})" for v, n in counts.most_common(6))
    if nulls:
        report.add(
            "warning",
            f"target {spec.target!r} is missing on {nulls} row(s): their days are quarantined",
        )
    if not spec.is_classifier:
        bad = frame[spec.target].cast(pl.Float64, strict=False).is_null().sum() - nulls
        if bad:
            report.add("warning", f"target {spec.target!r}: {bad} value(s) are not numbers")
        return None
    values = sorted(counts)
    levels = spec.label_levels
    if levels is None:
        if set(values) <= BINARY_TEXT:
            positives = counts.get("1", 0)
        elif set(values) >= BINARY_TEXT:
            extra = sorted(set(values) - BINARY_TEXT)
            report.add(
                "warning",
                f"target {spec.target!r} has values {extra} besides 0/1: the task is binary, "
                "days holding them are quarantined",
            )
            positives = counts.get("1", 0)
        elif len(values) == 2:
            report.add(
                "error",
                f"target {spec.target!r} holds {values[0]!r} and {values[1]!r}, not 0/1: set "
                f"`positive_label: {values[1]}` (or {values[0]}) in the spec",
            )
            return None
        else:
            report.add(
                "error",
                f"target {spec.target!r} holds {len(values)} values {values[:10]}: the task is "
                "binary (two values); map them to two, then set positive_label",
            )
            return None
    else:
        positive, negative = levels
        if positive not in counts:
            report.add(
                "error",
                f"positive_label {positive!r} is not among target {spec.target!r} values "
                f"{values[:10]} (compared exactly as written)",
            )
            return None
        others = [v for v in values if v != positive]
        negative = negative or (max(others, key=counts.__getitem__) if others else None)
        extra = [v for v in others if v != negative]
        if extra:
            report.add(
                "warning",
                f"target {spec.target!r} has values {extra} besides {positive!r} and "
                f"{negative!r}: the task is binary, days holding them are quarantined",
            )
        positives = counts[positive]
        report.add("info", f"target {spec.target!r}: {positive!r} -> 1, {negative!r} -> 0")
    total = sum(counts.values())
    rate = positives / total if total else 0.0
    report.add("info", f"target {spec.target!r}: {shown}; positive rate {rate:.4f}")
    return rate


def _features(spec: ModelSpec, frame: pl.DataFrame, report: PreflightReport) -> None:
    for feature in spec.features:
        if feature.name not in frame.columns:
            continue
        column = frame[feature.name]
        nulls = column.null_count()
        if feature.type == "numeric":
            if column.dtype == pl.String:
                cast = column.cast(pl.Float64, strict=False)
                bad = column.filter(column.is_not_null() & cast.is_null())
                if bad.len():
                    examples = sorted(set(bad.head(100).to_list()))[:3]
                    report.add(
                        "warning",
                        f"{feature.name!r} is numeric in the spec but {bad.len()} value(s) are "
                        f"not numbers (e.g. {examples}): their days are quarantined",
                    )
        elif feature.categories:
            text = _text(column)
            unknown = sorted(set(text.drop_nulls().unique().to_list()) - set(feature.categories))
            if unknown:
                hint = ""
                lowered = {level.lower() for level in feature.categories}
                if any(v.lower() in lowered for v in unknown):
                    hint = " (levels are compared exactly, case included)"
                report.add(
                    "warning",
                    f"{feature.name!r} has values {unknown[:6]} not among the spec's levels "
                    f"{list(feature.categories)}{hint}: their days are quarantined",
                )
        if nulls == frame.height and feature.nullable and feature.model_input:
            # Nothing to learn from, and scikit-learn's boosting fails on a column of NaN
            # ("window shape cannot be larger than input array shape") after the ingest.
            report.add(
                "error",
                f"{feature.name!r} is null in every row: fill it, or remove it from features "
                "(or set model_input: false)",
            )
        elif nulls and not feature.nullable:
            report.add(
                "warning",
                f"{feature.name!r} is {nulls / frame.height:.1%} null but `nullable: false`: "
                "their days are quarantined (set nullable: true to allow it)",
            )


def _dated(spec: ModelSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """The rows ingest files under a day, which the value checks judge: a row of no day (a
    header line repeated mid-file) is quarantined by itself and reported once, by `_days`, not
    as a bad value that would quarantine a day. All rows when none has a readable time."""
    if spec.timestamp not in frame.columns:
        return frame
    fmt = spec.timestamp_format
    dated = frame.filter(
        event_time.timestamp_utc(spec.timestamp, frame.schema[spec.timestamp], fmt).is_not_null()
    )
    return dated if dated.height else frame


def _days(spec: ModelSpec, frame: pl.DataFrame, report: PreflightReport) -> pl.DataFrame | None:
    if spec.timestamp not in frame.columns:
        return None
    fmt = spec.timestamp_format
    day = event_time.timestamp_utc(spec.timestamp, frame.schema[spec.timestamp], fmt)
    with_day = frame.with_columns(day.dt.date().alias("__day__"))
    undated = with_day.filter(pl.col("__day__").is_null())[spec.timestamp]
    shown = event_time.examples(undated)
    if undated.len() and undated.len() < frame.height:
        report.add(
            "warning",
            f"{undated.len()} row(s) have no readable timestamp in {spec.timestamp!r} (e.g. "
            f"{shown}: {event_time.expected(fmt)}): they belong to no day, are quarantined and "
            "block promotion (gates.max_undated_rows)",
        )
    per_day = with_day.drop_nulls("__day__").group_by("__day__").len().sort("__day__")
    if per_day.height == 0:
        report.add(
            "error",
            f"no readable timestamp in {spec.timestamp!r} (e.g. {shown}: "
            f"{event_time.expected(fmt)})",
        )
        return None
    rows = per_day["len"]
    first, last = per_day["__day__"][0], per_day["__day__"][-1]
    calendar = (last - first).days + 1
    report.add(
        "info",
        f"{per_day.height} day(s) with rows from {first} to {last} ({calendar - per_day.height} "
        f"calendar day(s) without rows, skipped); rows per day {rows.min()}..{rows.max()} "
        f"(median {int(rows.median())})",
    )
    if spec.start_date > last:
        report.add("error", f"start_date {spec.start_date} is after the data's last day {last}")
    return with_day


# The simulator's options a spec may set, and the types their values must have.
_SIMULATOR_OPTIONS = {"seed": (int,), "rows_per_day": (int,), "label_noise": (int, float)}


def _simulator_problems(options: dict) -> list[str]:
    """What `simulate_day` would refuse in the middle of an ingest run (an unknown option,
    a text where a number goes)."""
    problems = []
    for key, value in options.items():
        kinds = _SIMULATOR_OPTIONS.get(key)
        if kinds is None:
            problems.append(f"unknown option {key!r}; valid: {sorted(_SIMULATOR_OPTIONS)}")
        elif isinstance(value, bool) or not isinstance(value, kinds):
            problems.append(f"{key} must be a number, not {value!r}")
        elif key == "rows_per_day" and value < 1:
            problems.append(f"rows_per_day must be at least 1, not {value}")
        elif key == "label_noise" and not 0 <= value <= 1:
            problems.append(f"label_noise is a fraction in [0, 1], not {value}")
    return problems


def preflight(spec: ModelSpec) -> PreflightReport:
    """Read the spec's source and report what ingest, training and the gates will make of it."""
    report = PreflightReport(spec.name, spec.source.uri)
    if (problem := estimator_problem(spec)) is not None:
        report.add("error", f"estimator.params of {spec.estimator.kind!r}: {problem}")
    if spec.source.is_simulator:
        for problem in _simulator_problems(spec.source.simulator):
            report.add("error", f"source.simulator: {problem}")
        if not report.errors:
            report.add("info", "simulated source: nothing to check")
        return report
    frame = _read(spec, report)
    if frame is None:
        return report
    report.add("info", f"{frame.height} rows, {len(frame.columns)} columns")
    _columns(spec, frame, report)
    dated = _dated(spec, frame)
    rate = _target(spec, dated, report)
    _features(spec, dated, report)
    with_day = _days(spec, frame, report)
    if with_day is not None and not report.errors:
        check_fit(spec, with_day, rate, report)
    return report
