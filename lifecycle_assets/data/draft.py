"""Draft a spec from a data file: a starting point a person reads and edits, never a final one.

Types come from what the values parse as, levels from the distinct values (as written), the
target from its name or from being the one two-valued column, the timestamp from the first
column whose values read as datetimes (none: a snapshot). Every guess is marked with a comment
in the YAML. Lines that repeat the header (CSV exports glued together) are no data: they are
left out of every guess and named in the YAML, so the header's text never becomes a level or a
third target value.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl

from lifecycle_assets.data import event_time
from lifecycle_assets.data.sources import not_utf8_header, scan

MAX_LINES_SHOWN = 10
TARGET_NAMES = ("target", "label", "y", "class", "outcome", "churn", "churned", "default")
MAX_LEVELS = 30
# Names a reader would take for the attribute fairness is judged on, before the first categorical.
SENSITIVE_NAMES = ("gender", "sex", "race", "ethnic", "religion", "nationality", "disability")


def _fmt(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("csv", "parquet"):
        raise ValueError(f"{path}: cannot tell the format (expected .csv or .parquet)")
    return suffix


def _is_numeric(column: pl.Series) -> bool:
    if column.dtype.is_numeric():
        return True
    if column.dtype != pl.String:
        return False
    present = column.drop_nulls()
    return present.len() > 0 and present.cast(pl.Float64, strict=False).null_count() == 0


def _is_timestamp(column: pl.Series) -> bool:
    if isinstance(column.dtype, pl.Datetime | pl.Date):
        return True
    if column.dtype != pl.String:
        return False
    present = column.drop_nulls().head(1000)
    if present.len() == 0 or _is_numeric(present):
        return False
    iso = present.to_frame("value").select(event_time.parse_text(pl.col("value")))
    if iso.to_series().is_not_null().mean() >= 0.9:
        # A few unreadable values (a repeated header line, an odd date) do not make it text:
        # ingest quarantines their rows.
        return True
    try:
        parsed = present.str.to_datetime(strict=False, time_unit="us")
    except pl.exceptions.ComputeError:  # no datetime format fits the values
        return False
    return parsed.null_count() == 0


def _timestamp_lines(column: pl.Series) -> list[str]:
    """`timestamp:`, `timestamp_format:` when the values are not ISO 8601 (with a warning when
    day-first and month-first both read them), and `start_date:` as the first day read."""
    lines = [f"timestamp: {column.name}"]
    fmt = None
    if column.dtype == pl.String:
        iso = column.to_frame().select(event_time.parse_text(pl.col(column.name)))
        unread = iso.null_count().item() - column.null_count()
        if unread and unread <= 0.1 * (column.len() - column.null_count()):
            lines.append(f"# {unread} time(s) are not ISO 8601: their rows will be quarantined")
        elif unread:
            fits = event_time.formats_reading_all(column)
            if fits:
                fmt = fits[0]
                also = f"  # guess: {fits[1]!r} reads every value too: check" if fits[1:] else ""
                lines.append(f"timestamp_format: {fmt!r}{also}")
            else:
                lines.append("# timestamp_format: the times are not ISO 8601: write their format")
    parsed = column.to_frame().select(
        event_time.timestamp_utc(column.name, column.dtype, fmt).dt.date()
    )
    first = parsed.to_series().min()
    lines.append(f"start_date: {first or dt.datetime.now(dt.UTC).date()}")
    return lines


def _text_levels(column: pl.Series) -> list[str]:
    if column.dtype == pl.Boolean:
        return ["False", "True"]
    return sorted(str(v) for v in column.drop_nulls().unique().to_list())


def repeated_headers(frame: pl.DataFrame) -> list[int]:
    """The rows (0-based) whose every value is its column's name: a header line repeated where
    files were concatenated. Only text columns can hold one (a typed Parquet column cannot)."""
    if frame.width == 0 or any(dtype != pl.String for dtype in frame.dtypes):
        return []
    same = pl.all_horizontal(pl.col(c).str.strip_chars() == c.strip() for c in frame.columns)
    return frame.select(pl.arg_where(same.fill_null(False))).to_series().to_list()


def _repeated_header_lines(rows: list[int], timed: bool) -> list[str]:
    """The YAML comment naming the repeated headers by line (one line per row, after the
    header line) and what ingest will do with them."""
    shown = ", ".join(str(row + 2) for row in rows[:MAX_LINES_SHOWN])
    more = f" and {len(rows) - MAX_LINES_SHOWN} more" if len(rows) > MAX_LINES_SHOWN else ""
    fate = (
        "ingest quarantines them as rows without a readable time"
        if timed
        else "ingest quarantines the snapshot for them: delete them from the file"
    )
    return [
        f"# {len(rows)} repeated header line(s) (lines {shown}{more}) left out of this draft;",
        f"# {fate}",
    ]


def _is_id(column: str, series: pl.Series) -> bool:
    """Named like an id (`customer_id`, `ID`) and a distinct value in every row."""
    named = "id" in re.split(r"[^a-z]+", column.lower())
    return named and series.null_count() == 0 and series.n_unique() == series.len()


def _sensitive_guess(categorical: list[str]) -> str:
    """The first categorical named like a protected attribute, else the first categorical."""
    named = [
        column
        for column in categorical
        if any(
            token.startswith(word)
            for token in re.split(r"[^a-z]+", column.lower())
            for word in SENSITIVE_NAMES
        )
    ]
    return (named or categorical)[0]


def _yaml_scalar(value: str) -> str:
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ .-]*", value) and value.lower() not in (
        "yes", "no", "true", "false", "on", "off", "null", "y", "n",
    )  # fmt: skip
    return value if plain else '"' + value.replace('"', '\\"') + '"'


def draft_spec(path: Path, *, name: str | None = None, target: str | None = None) -> str:
    """The YAML text of a draft spec for the file at `path`."""
    fmt = _fmt(path)
    try:
        frame = scan(path, fmt).head(100_000).collect()
    except (OSError, pl.exceptions.PolarsError) as error:  # e.g. not UTF-8, a ragged line
        raise ValueError(f"{path}: cannot read it: {str(error).splitlines()[0]}") from None
    if (problem := not_utf8_header(frame.columns)) is not None:
        raise ValueError(f"{path}: {problem}")
    headers = repeated_headers(frame)
    frame = frame.filter(~pl.int_range(pl.len()).is_in(headers))
    if frame.height == 0:
        raise ValueError(f"{path}: no rows to draft a spec from")
    columns = frame.columns
    timestamp = next((c for c in columns if _is_timestamp(frame[c])), None)
    if target is None:
        named = [c for c in columns if c.lower() in TARGET_NAMES]
        binary = [c for c in columns if c != timestamp and frame[c].drop_nulls().n_unique() == 2]
        target = (named or binary or [None])[0]
    if target is None or target not in columns:
        raise ValueError(f"{path}: cannot guess the target; pass --target (columns: {columns})")
    values = _text_levels(frame[target])
    classifier = len(values) == 2
    model = name or re.sub(r"[^a-z0-9_]", "_", path.stem.lower()).strip("_") or "model"
    if not model[0].isalpha():
        model = f"m_{model}"
    features, categorical, id_column = [], {}, None
    for column in columns:
        if column in (timestamp, target):
            continue
        series = frame[column]
        nullable = ", nullable: true" if series.null_count() else ""
        if _is_numeric(series) and series.dtype != pl.Boolean:
            features.append(f"  - {{name: {column}, type: numeric{nullable}}}")
            continue
        levels = _text_levels(series)
        if len(levels) > MAX_LEVELS:
            features.append(
                f"  # {column}: {len(levels)} distinct values, left out (an id or free text?)"
            )
            if _is_id(column, series) and id_column is None:
                id_column = column
            continue
        categorical[column] = len(features)
        shown = ", ".join(_yaml_scalar(v) for v in levels)
        features.append(
            f"  - {{name: {column}, type: categorical, categories: [{shown}]{nullable}}}"
        )
    if not categorical:
        raise ValueError(f"{path}: no categorical column to use as sensitive_attribute")
    sensitive = _sensitive_guess(list(categorical))
    # Slices and fairness only: the model never reads it (README, "Bring your own data").
    features[categorical[sensitive]] = features[categorical[sensitive]][:-1] + (
        ", model_input: false}"
    )
    lines = [
        f"name: {model}",
        f"description: Drafted from {path.name}; read and edit before use.",
    ]
    if headers:
        lines += _repeated_header_lines(headers, timed=timestamp is not None)
    lines += [
        "source:",
        f"  uri: {path.resolve()}",
        f"target: {target}",
    ]
    if classifier and set(values) != {"0", "1"}:
        lines.append(f"positive_label: {_yaml_scalar(values[-1])}  # guess: check it")
    if not classifier:
        lines.append("task: regression  # the target has more than two values")
    if timestamp is None:
        lines += [
            "# no timestamp column: a snapshot, filed as one partition under start_date and",
            "# split at random (stratified by the target)",
            f"start_date: {dt.datetime.now(dt.UTC).date()}",
        ]
    else:
        lines += _timestamp_lines(frame[timestamp])
    lines += [
        f"sensitive_attribute: {sensitive}  # guess: the column fairness is judged on",
        *(
            [f"id_column: {id_column}  # guess: echoed back as each prediction's record_id"]
            if id_column
            else []
        ),
        "features:",
        *features,
    ]
    return "\n".join(lines) + "\n"
