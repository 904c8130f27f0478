"""Before a run uses the lake: check the window's objects against their manifests and settle
what is damaged, so that a missing or altered batch is never silently used or skipped.

- A raw batch missing or altered (its altered file moved to quarantine, `data.lake_check`) is
  read again from the source as ingest would store it. When those bytes hash to the manifest's
  SHA-256 (the deterministic simulator, an unchanged source file) they are written back and the
  day is whole again. When they do not, the run refuses to train on the window
  (`LakeAudit.refusal`) and changes nothing: the manifest still names the recorded batch.
- A raw batch whose inputs changed anyway (a stale fingerprint, or `--refresh`) is read again by
  the ingest that follows, like any stale day: its recorded bytes are no longer wanted.
- A features file missing or altered, or a day without a features manifest, is rebuilt from its
  verified raw batch by the caller (`LakeAudit.rebuild`): derived data is never a reason to fail.

Every damage is reported by name (model, day, path, expected and found hash) and kept on
record in `<quarantine>/<model>/damaged/<day>/`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lifecycle_assets.data.fingerprint import Fingerprint
from lifecycle_assets.data.lake import BatchRecord, Lake, canonical_parquet, sha256_bytes
from lifecycle_assets.data.lake_check import (
    FEATURES,
    RAW,
    REBUILT,
    REFUSED,
    REREAD,
    RESTORED,
    Damage,
    check_objects,
    keep_report,
    restore,
    set_aside,
)
from lifecycle_assets.data.sources import read_day
from lifecycle_assets.ml.schemas import validate_raw
from lifecycle_assets.spec import ModelSpec

REMEDY = (
    "restore the file from a backup, or run `lifecycle run --refresh` to re-read the window "
    "as the source has it now"
)


@dataclass
class LakeAudit:
    """What the check of a window found and settled."""

    checked: int = 0  # objects checked
    hashed: int = 0  # of which hashed (their listing metadata moved, or a full check)
    damaged: list[Damage] = field(default_factory=list)
    # Days whose features the caller rebuilds from the verified raw batch, and why.
    rebuild: dict[str, str] = field(default_factory=dict)

    @property
    def refused(self) -> list[Damage]:
        return [d for d in self.damaged if d.resolution == REFUSED]

    def refusal(self) -> str:
        """One line naming the first irreproducible day and the remedy; "" when none."""
        refused = self.refused
        if not refused:
            return ""
        first = refused[0]
        more = f" (and {len(refused) - 1} more day(s): see the run summary)" if refused[1:] else ""
        return (
            f"raw batch {first.day} of {first.model} is {first.problem} ({first.path}, "
            f"manifest SHA-256 {first.expected[:12]}) and {first.outcome}{more}"
        )

    def lines(self) -> list[str]:
        return [damage.line() for damage in self.damaged]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "hashed": self.hashed,
            "damaged": [d.to_dict() for d in self.damaged],
            "features_rebuilt": dict(self.rebuild),
        }


def reproduce(spec: ModelSpec, day: str) -> tuple[bytes | None, str]:
    """The bytes ingest would store for `day` if it read the source now, or why there are
    none (no rows, rows that fail validation, a source that cannot be read)."""
    try:
        frame, _ = read_day(spec, dt.date.fromisoformat(day))
    except (OSError, ValueError, pl.exceptions.PolarsError) as error:
        return None, f"the source cannot be read ({str(error).splitlines()[0]})"
    if frame.is_empty():
        return None, "the source has no rows for the day now"
    typed, report = validate_raw(frame, spec)
    if not report.passed:
        return None, f"the source's rows now fail validation ({report.summary()})"
    return canonical_parquet(typed), ""


def _settle_raw(
    spec: ModelSpec, damage: Damage, record: BatchRecord, current: Fingerprint, refresh: bool
) -> None:
    """Restore the batch from the source if it gives the same bytes; else say why not."""
    changes = (
        ["--refresh"] if refresh else current.for_day(damage.day).changes_from(record.fingerprint)
    )
    if changes:
        damage.resolution = REREAD
        damage.outcome = f"not used: the day is read again from the source ({', '.join(changes)})"
        return
    data, why = reproduce(spec, damage.day)
    if data is not None and restore(record.path, record.sha256, data):
        damage.resolution = RESTORED
        damage.outcome = "restored from the source, SHA-256 verified"
        return
    if data is not None:
        why = f"it now gives SHA-256 {sha256_bytes(data)[:12]}"
    damage.resolution = REFUSED
    damage.outcome = f"the source cannot give it back: {why}; {REMEDY}"


def audit_window(
    spec: ModelSpec,
    lake: Lake,
    days: list[str],
    current: Fingerprint,
    *,
    refresh: bool = False,
    run_id: str | None = None,
) -> LakeAudit:
    """Check the accepted raw batches of `days` and their features; settle the damaged ones
    (see the module docstring). `refresh` hashes every object and leaves re-reading to ingest."""
    audit = LakeAudit()
    records = {day: r for day in days if (r := lake.batch(day)) and r.status == "accepted"}
    raw = {day: (r.path, r.sha256) for day, r in records.items()}
    damaged, audit.hashed = check_objects(lake, RAW, raw, full=refresh)
    for damage in damaged:
        set_aside(lake, damage)
        _settle_raw(spec, damage, records[damage.day], current, refresh)
        keep_report(lake, damage, run_id)
    audit.damaged += damaged
    unsettled = {d.day for d in damaged if d.resolution != RESTORED}
    features = {}
    for day, record in records.items():
        today = current.for_day(day)
        if day in unsettled or refresh or today.changes_from(record.fingerprint):
            continue  # not used as stored: ingest reads the day again, or the run refuses
        entry = lake.feature_entry(day)
        if entry is None:
            audit.rebuild[day] = "no features manifest"
        elif entry.get("raw_sha256") != record.sha256:
            audit.rebuild[day] = "features computed from another batch"
        elif not today.changes_from(entry.get("fingerprint")):
            features[day] = (entry["path"], entry["sha256"])
    damaged, hashed = check_objects(lake, FEATURES, features, full=refresh)
    for damage in damaged:
        set_aside(lake, damage)
        damage.resolution = REBUILT
        damage.outcome = f"rebuilt from the verified raw batch {records[damage.day].sha256[:12]}"
        audit.rebuild[damage.day] = f"features file {damage.problem}"
        keep_report(lake, damage, run_id)
    audit.damaged += damaged
    audit.checked, audit.hashed = len(raw) + len(features), audit.hashed + hashed
    return audit
