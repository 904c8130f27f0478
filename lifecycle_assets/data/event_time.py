"""Reading a row's event time from text: ISO 8601, or the one format the spec declares.

Polars, given no format, infers one from the column's first non-null value and applies it to
every row: a file whose first row reads `01/02/2026 10:00` turns every ISO row after it into
null (and `01/02/2026` itself is taken as 1 February, day first). So the format is never
inferred: without `timestamp_format` in the spec a value must be ISO 8601 (a date, a date and
time with `T` or a space, optional seconds and fraction, optional `Z` or UTC offset), and with
it exactly that format. A value that does not fit is unreadable, never guessed: its row belongs
to no day and is quarantined and counted (`data.ingest.quarantine_undated`).
"""

from __future__ import annotations

import polars as pl

# The ISO 8601 shapes a value may take; each is matched exactly (the whole value), and the first
# that fits wins. An offset (`+02:00`, `Z`) is converted to UTC; no offset means UTC.
ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def _parse(text: pl.Expr, fmt: str) -> pl.Expr:
    return text.str.to_datetime(format=fmt, strict=False, time_unit="us", time_zone="UTC")


def parse_text(text: pl.Expr, fmt: str | None = None) -> pl.Expr:
    """UTC datetimes of text event times: `fmt` (a strftime format) when given, else ISO 8601;
    null where the text is empty or does not fit."""
    text = text.str.strip_chars()
    if fmt:
        return _parse(text, fmt)
    return pl.coalesce([_parse(text, candidate) for candidate in ISO_FORMATS])


def timestamp_utc(column: str, dtype: pl.DataType, fmt: str | None = None) -> pl.Expr:
    """The UTC event time of `column` (of type `dtype`): text is read by `parse_text`, a
    datetime without a time zone is taken as UTC."""
    expr = pl.col(column)
    if dtype == pl.String:
        return parse_text(expr, fmt)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return expr.dt.replace_time_zone("UTC")
    if dtype == pl.Date:
        return expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return expr.dt.convert_time_zone("UTC")


def expected(fmt: str | None) -> str:
    """What a readable event time looks like, and the option that changes it, in words."""
    if fmt:
        return f"not in timestamp_format {fmt!r}"
    return (
        "not ISO 8601 (2026-01-31, 2026-01-31 09:30:00, 2026-01-31T09:30:00Z); "
        "set timestamp_format if the file writes times another way"
    )


def examples(values: pl.Series, limit: int = 5) -> list[str]:
    """A few distinct unreadable values as written (an empty one as '')."""
    text = values.cast(pl.String).fill_null("")
    return sorted(set(text.head(1000).to_list()))[:limit]


# Common ways a file writes times other than ISO 8601, for `lifecycle draft-spec` to propose.
_DATES = ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y", "%Y/%m/%d")
_TIMES = ("", " %H:%M", " %H:%M:%S")
COMMON_FORMATS = tuple(date + time for date in _DATES for time in _TIMES)


def formats_reading_all(values: pl.Series) -> list[str]:
    """The common formats that read every non-empty value, in `COMMON_FORMATS` order. More than
    one (day-first and month-first) means the values cannot tell which is meant."""
    present = values.cast(pl.String).str.strip_chars().drop_nulls()
    present = present.filter(present != "").head(1000)
    if present.len() == 0:
        return []
    frame = present.to_frame("value")
    return [
        fmt
        for fmt in COMMON_FORMATS
        if frame.select(parse_text(pl.col("value"), fmt).null_count()).item() == 0
    ]
