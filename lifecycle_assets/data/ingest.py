"""One day's ingest and featurization, and which stored days a training window may use.

Plain functions over the lake, so the Dagster assets (one run per day, or one backfill run per
model) and the CLI reach the same decisions: an empty day is skipped and never stored, a bad
batch is quarantined and takes its day out of training, a row whose event time cannot be read
(it belongs to no day) is quarantined and counted, and a stored day whose fingerprint no longer
matches its inputs is stale.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lifecycle_assets.crash import crash_point
from lifecycle_assets.data import event_time
from lifecycle_assets.data.fingerprint import Fingerprint, file_hashes, fingerprint
from lifecycle_assets.data.lake import BatchRecord, Lake
from lifecycle_assets.data.sources import last_day, read_day, undated_rows
from lifecycle_assets.ml.features import feature_table
from lifecycle_assets.ml.schemas import ValidationReport, validate_raw
from lifecycle_assets.spec import ModelSpec


@dataclass(frozen=True)
class DayIngest:
    """What happened to one day: `accepted`, `quarantined`, or `empty` (nothing stored)."""

    day: str
    status: str
    source: str
    rows: int
    record: BatchRecord | None = None
    report: ValidationReport | None = None

    @property
    def reason(self) -> str:
        if self.status == "empty":
            return f"no rows for {self.day} in {self.source}: skipped, nothing stored"
        return self.report.summary() if self.report else ""


def ingest_day(
    spec: ModelSpec,
    lake: Lake,
    day: str,
    current: Fingerprint | None = None,
    run_id: str | None = None,
) -> DayIngest:
    """Read, validate and store one day; quarantine a bad batch, skip an empty one. `run_id`
    (the Dagster run doing it) is kept with the batch's record and validation report."""
    frame, source = read_day(spec, dt.date.fromisoformat(day))
    current = (current or fingerprint(spec)).for_day(day)
    if frame.is_empty():
        # Calendar gaps (weekends, holidays) are normal: nothing to store, nothing to train on.
        lake.mark_empty(day, current.to_dict())
        return DayIngest(day, "empty", source, 0)
    typed, report = validate_raw(frame, spec)
    record = lake.store_batch(
        day,
        typed if report.passed else frame,
        source,
        report.to_dict(),
        current.to_dict(),
        run_id=run_id,
    )
    crash_point("after-store-batch")  # inside an ingest step: this day stored, the next not yet
    return DayIngest(day, record.status, source, frame.height, record, report)


def quarantine_undated(
    spec: ModelSpec, lake: Lake, current: Fingerprint | None = None, run_id: str | None = None
) -> dict[str, Any] | None:
    """Find the source's rows whose event timestamp is empty or unreadable and keep them in
    quarantine with their provenance (source, its SHA-256, count, reason, examples); with none,
    clear what an earlier read of a since-fixed source left. Returns the quarantine record.

    A day's read filters rows by their day, so such a row is in no day's batch: without this it
    would vanish without a trace.
    """
    frame = undated_rows(spec)
    if frame.is_empty():
        lake.store_undated(frame, {})
        return None
    current = current or fingerprint(spec)
    values = frame[spec.timestamp]
    empty = int(values.cast(pl.String).str.strip_chars().fill_null("").eq("").sum())
    shown = event_time.examples(values)
    why = event_time.expected(spec.timestamp_format)
    summary = (
        f"{frame.height} row(s) without a readable event timestamp in {spec.timestamp!r} "
        f"({empty} empty, {frame.height - empty} unreadable, e.g. {shown}: {why})"
    )
    report = {
        "summary": summary,
        "column": spec.timestamp,
        "empty": empty,
        "unreadable": frame.height - empty,
        "examples": shown,
        "timestamp_format": spec.timestamp_format,
        "source": spec.source.uri,
        # Each source file's SHA-256 (local files), and the fingerprint's hash over them all.
        "source_files": file_hashes(spec),
        "source_sha256": current.source,
        "fingerprint": current.to_dict(),
        "run_id": run_id,
        "found_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return lake.store_undated(frame, report)


def undated_in_quarantine(lake: Lake) -> tuple[int, str]:
    """How many of the source's rows of no day are in quarantine, and why with where ("" when
    none): what the run summary and the quarantine gate say."""
    record = lake.undated()
    if not record:
        return 0, ""
    return int(record["rows"]), f"{record['summary']} -> {record['path']}"


def featurize_day(spec: ModelSpec, lake: Lake, day: str) -> dict[str, Any]:
    """Compute and store the features of the day's accepted batch (same fingerprint)."""
    record = lake.batch(day)
    if record is None:
        raise LookupError(f"no raw batch for {day}: ingest it first")
    if record.status != "accepted":
        raise LookupError(
            f"raw batch {day} is quarantined ({record.path}): "
            f"{(record.report or {}).get('summary', '')}"
        )
    table = feature_table(lake.read_batch(record), spec)
    return lake.store_features(day, table, record.sha256, record.fingerprint)


def day_state(lake: Lake, day: str, current: Fingerprint) -> tuple[str, list[str]]:
    """`fresh` (usable as stored), `quarantined`, `empty` (no rows, same inputs), `stale`
    (with what changed) or `missing`. Compared with the day's own fingerprint: only the source
    files that feed `day` count."""
    current = current.for_day(day)
    record = lake.batch(day)
    if record is None:
        empty = lake.empty_fingerprint(day)
        if empty is None:
            return "missing", []
        changes = current.changes_from(empty)
        return ("stale", changes) if changes else ("empty", [])
    if record.status != "accepted":
        changes = current.changes_from(record.fingerprint)
        return ("stale", changes) if changes else ("quarantined", [])
    changes = current.changes_from(record.fingerprint)
    if changes:
        return "stale", changes
    entry = lake.feature_entry(day)
    if entry is None or entry.get("raw_sha256") != record.sha256:
        return "missing", ["features not computed from the stored batch"]
    if current.changes_from(entry.get("fingerprint")):
        return "stale", current.changes_from(entry.get("fingerprint"))
    return "fresh", []


@dataclass
class WindowSelection:
    """The days a training set is built from, and the window days it had to leave out."""

    days: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    # Source rows of no day (event timestamp empty or unreadable), kept in quarantine: they
    # may belong to the window, so the training set is not known to be complete.
    undated_rows: int = 0
    undated: str = ""

    @property
    def window(self) -> list[str]:
        return sorted(self.days + self.quarantined + self.stale)

    @property
    def quarantined_share(self) -> float:
        return len(self.quarantined) / len(self.window) if self.window else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_days": len(self.window),
            "used_days": len(self.days),
            "quarantined_days": list(self.quarantined),
            "stale_days": list(self.stale),
            "quarantined_share": self.quarantined_share,
            "undated_rows": self.undated_rows,
            "undated": self.undated,
        }


def window_anchor(spec: ModelSpec) -> dt.date:
    """The window's last day: `end_date`, else the data's own last day, else yesterday; never
    today or later (a daily partition exists once its day is over)."""
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    return min(spec.end_date or last_day(spec) or yesterday, yesterday)


def window_keys(spec: ModelSpec, anchor: dt.date | None = None) -> list[str]:
    """The window's calendar days (daily partition keys): the newest `window_days` from
    `start_date` up to the anchor. Days without rows are in it, and simply hold no batch."""
    anchor = anchor or window_anchor(spec)
    first = max(spec.start_date, anchor - dt.timedelta(days=spec.training.window_days - 1))
    return [
        (first + dt.timedelta(days=offset)).isoformat()
        for offset in range((anchor - first).days + 1)
    ]


def select_window(
    lake: Lake, spec: ModelSpec, current: Fingerprint | None = None
) -> WindowSelection:
    """The stored days of the window (`window_keys`), split into those whose newest batch is
    accepted and fresh (used) and those quarantined or stale (left out)."""
    current = current or fingerprint(spec)
    keys = set(window_keys(spec))
    stored = [day for day in lake.batch_days() if day in keys]
    selection = WindowSelection()
    selection.undated_rows, selection.undated = undated_in_quarantine(lake)
    for day in stored:
        state, _ = day_state(lake, day, current)
        if state == "fresh":
            selection.days.append(day)
        elif state == "quarantined":
            selection.quarantined.append(day)
        else:
            selection.stale.append(day)
    return selection


def read_features(lake: Lake, days: list[str]) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """The stored feature partitions of `days`, verified against their hashes."""
    entries = [lake.feature_entry(day) for day in days]
    missing = [day for day, entry in zip(days, entries, strict=True) if entry is None]
    if missing:
        raise LookupError(f"no features stored for {missing}")
    frames = [lake.read_verified(e["path"], e["sha256"]) for e in entries]  # type: ignore[index]
    return pl.concat(frames), entries  # type: ignore[return-value]
