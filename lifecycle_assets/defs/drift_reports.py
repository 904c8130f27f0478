"""The drift reports the drift sensor has not judged yet, read from the instance's event log.

Every report materialized since the sensor's cursor counts, not only the newest: a backfill of
monitoring days, or a sensor switched off for a week, materializes a drifted day and then clean
ones between two ticks, and that drift must still be acted on. A day materialized again (a
re-run after a fix) counts by its newest report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

# More days than a skip reason or a run tag can name are summed up as "and N more days".
DAYS_SHOWN = 6


@dataclass(frozen=True)
class DriftedDay:
    day: str
    features: list[str]
    record: dg.EventLogRecord

    def __str__(self) -> str:
        return f"{self.day} in {self.features or 'the score'}"


@dataclass
class DriftReading:
    """One tick's page of new drift reports, judged by the newest report of each day."""

    days: list[str]
    drifted: list[DriftedDay]
    last_storage_id: int
    superseded: int = 0
    deferred: list[str] = field(default_factory=list)
    more: bool = False

    def notes(self) -> str:
        """What this page did not judge, and why: never skipped in silence."""
        notes = []
        if self.superseded:
            notes.append(f"{self.superseded} superseded by a newer report of the same day")
        if self.deferred:
            has = "has" if len(self.deferred) == 1 else "have"
            notes.append(f"{_days_text(self.deferred)} {has} a newer report, judged next tick")
        if self.more:
            notes.append("more reports wait for the next tick")
        return "".join(f"; {note}" for note in notes)

    def no_drift(self) -> str:
        if not self.days:
            return f"no drift report judged this tick{self.notes()}"
        judged = (
            f"the drift report of {self.days[0]}"
            if len(self.days) == 1
            else f"the {len(self.days)} drift reports of {_days_text(self.days)}"
        )
        return f"no drift in {judged}{self.notes()}"

    def drift_text(self, limit: int = 1000) -> str:
        """The drifted days with their features, within `limit` characters."""
        parts = [str(day) for day in self.drifted]
        for shown in range(len(parts), 0, -1):
            rest = len(parts) - shown
            text = "; ".join(parts[:shown]) + (f" and {rest} more days" if rest else "")
            if len(text) <= limit:
                return text
        return text[:limit]


def _days_text(days: list[str]) -> str:
    if len(days) <= DAYS_SHOWN:
        return ", ".join(days)
    return f"{', '.join(days[: DAYS_SHOWN - 1])} and {len(days) - DAYS_SHOWN + 1} more days"


def _drifted(record: dg.EventLogRecord) -> bool:
    metadata = record.asset_materialization.metadata
    # A day without traffic records no verdict: nothing drifted.
    return "drifted" in metadata and bool(metadata["drifted"].value)


def _features(record: dg.EventLogRecord) -> list[str]:
    metadata = record.asset_materialization.metadata
    return list(metadata["drifted_features"].value) if "drifted_features" in metadata else []


def read_drift_reports(
    instance: dg.DagsterInstance, key: dg.AssetKey, after: int, limit: int
) -> DriftReading:
    """The reports materialized after storage id `after`, oldest first, at most `limit`: the
    cursor moves to the last one read, so the next tick takes up exactly where this one ends.

    A drifted day whose newer report lies past the page is left to the tick that reads it:
    acting on the older report would retrain for a drift the day no longer shows.
    """
    page = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=limit, ascending=True
    )
    newest: dict[str, dg.EventLogRecord] = {}
    for record in page.records:
        newest[str(record.partition_key)] = record
    last = page.records[-1].storage_id
    deferred = []
    if page.has_more:
        for day, record in list(newest.items()):
            if record.partition_key is None or not _drifted(record):
                continue
            later = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day], after_storage_id=last),
                limit=1,
            ).records
            if later:
                deferred.append(day)
                del newest[day]
    judged = sorted(newest.items())
    return DriftReading(
        days=[day for day, _ in judged],
        drifted=[DriftedDay(day, _features(r), r) for day, r in judged if _drifted(r)],
        last_storage_id=last,
        superseded=len(page.records) - len(newest) - len(deferred),
        deferred=deferred,
        more=page.has_more,
    )
