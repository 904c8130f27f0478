"""What the ingest of one model's window did, for the run's summary line and its JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class IngestOutcome:
    """Days ingested (and why), skipped as unchanged, quarantined, and without rows; and what
    the check of the lake against its manifests found and settled (`data.lake_reconcile`)."""

    ingested: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    # Days read again by themselves because their fingerprint changed: day -> what changed.
    reingested: dict[str, str] = field(default_factory=dict)
    # Source rows of no day (event timestamp empty or unreadable), kept in quarantine, and why
    # (with the quarantine file): `data.ingest.quarantine_undated`.
    undated_rows: int = 0
    undated: str = ""
    # `LakeAudit.to_dict()`: objects checked and hashed, each damaged one, features rebuilt.
    lake: dict[str, Any] = field(default_factory=dict)
    # One line per damaged object (model, day, path, both hashes, what was done).
    lake_damage: list[str] = field(default_factory=list)
    # Why the window may not be trained on (a raw batch the source cannot give back); "" if not.
    refusal: str = ""

    def line(self, model: str) -> str:
        parts = [
            f"{model}: ingested {len(self.ingested)} day(s)",
            f"{len(self.skipped)} unchanged",
            f"{len(self.quarantined)} quarantined",
            f"{len(self.empty)} without rows (skipped)",
        ]
        text = ", ".join(parts)
        if self.reingested:
            reasons = sorted(set(self.reingested.values()))
            text += f"; {len(self.reingested)} re-read because {', '.join(reasons)}"
        if self.undated_rows:
            text += f"; {self.undated_rows} row(s) without a readable timestamp quarantined"
        if self.lake_damage:
            text += f"; {len(self.lake_damage)} damaged file(s) in the lake"
        if rebuilt := self.lake.get("features_rebuilt"):
            text += f"; features of {len(rebuilt)} day(s) rebuilt from their raw batches"
        return text

    def details(self) -> list[str]:
        """The lines under the summary line: each quarantined day, the rows of no day, each
        damaged file of the lake, each rebuilt features day."""
        lines = [f"  quarantined {day}: {why}" for day, why in sorted(self.quarantined.items())]
        if self.undated:
            lines.append(f"  quarantined, in no day: {self.undated}")
        lines += [f"  lake: {line}" for line in self.lake_damage]
        rebuilt = self.lake.get("features_rebuilt") or {}
        lines += [f"  rebuilt features of {day} ({why})" for day, why in sorted(rebuilt.items())]
        return lines
