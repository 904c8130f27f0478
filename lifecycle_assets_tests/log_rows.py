"""Write prediction log rows as the service does, for tests that play the service's part."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from lifecycle_assets.data import valid_json
from lifecycle_assets.data.prediction_log import (
    PREDICTED_AT,
    SEGMENT_SUFFIX,
    day_dir,
    segment_files,
)


def append_log_rows(
    log_dir: Path, model: str, rows: list[dict[str, Any]], segment: str = "test-1-0"
) -> list[Path]:
    """Append `rows` to `segment` of each row's day (by `predicted_at`, a datetime or ISO text)."""
    written: dict[Path, list[str]] = {}
    for row in rows:
        at = row[PREDICTED_AT]
        when = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(at)
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
        path = day_dir(log_dir, model, when.date()) / f"{segment}{SEGMENT_SUFFIX}"
        line = valid_json.dumps({**row, PREDICTED_AT: when.isoformat(timespec="microseconds")})
        written.setdefault(path, []).append(line + "\n")
    for path, lines in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write("".join(lines))
    return sorted(written)


def logged_lines(log_dir: Path, model: str) -> list[dict[str, Any]]:
    """Every line of every segment of `model`, parsed (tests expect no bad lines here)."""
    return [
        valid_json.loads(line) for path in segment_files(log_dir, model) for line in path.open()
    ]
