"""Where to look for a prediction id: its UUIDv7 timestamp names the day folder of its log.

Prediction ids are UUIDv7 (the first 48 bits are the Unix time in milliseconds), and the logs
are laid out `<model>/<YYYY-MM-DD>/<segment>.jsonl`, so a trace reads the segments of that day
(and its neighbours, for a clock at midnight or a shadow scored just after) instead of every log
ever written. The id itself is the index: nothing to keep in step with the logs. An id that is
not a UUIDv7 (older logs) narrows nothing and every log is read, as before.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

_DAY_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")


def uuid7_time(prediction_id: str) -> dt.datetime | None:
    """The UTC time a UUIDv7 was minted at; None for anything else."""
    try:
        parsed = uuid.UUID(prediction_id)
    except (ValueError, AttributeError, TypeError):
        return None
    if parsed.version != 7:
        return None
    return dt.datetime.fromtimestamp((parsed.int >> 80) / 1000, dt.UTC)


def candidate_days(prediction_id: str) -> frozenset[str] | None:
    """The day folders (`YYYY-MM-DD`) that can hold the id's log rows; None: any folder."""
    minted = uuid7_time(prediction_id)
    if minted is None:
        return None
    day = minted.date()
    return frozenset(str(day + dt.timedelta(days=k)) for k in (-1, 0, 1))


def may_hold(path: Path, days: frozenset[str] | None) -> bool:
    """Whether a log file can hold rows of those days: files outside day folders always can."""
    if days is None:
        return True
    folder = next((p.name for p in path.parents if _DAY_FOLDER.fullmatch(p.name)), None)
    return folder is None or folder in days
