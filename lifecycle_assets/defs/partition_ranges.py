"""Runs over a range of daily partitions: one Dagster run for many days, each its own partition.

The ingest assets have a single-run backfill policy; these tags are how a run (launched by the
CLI, a sensor or a UI backfill) names the range it covers.
"""

from __future__ import annotations

import datetime as dt

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
ONE_DAY = dt.timedelta(days=1)


def contiguous_blocks(days: list[str]) -> list[list[str]]:
    """Runs of consecutive days: a partition range covers consecutive days only."""
    blocks: list[list[str]] = []
    for day in sorted(set(days)):
        previous = blocks[-1][-1] if blocks else None
        if previous and dt.date.fromisoformat(day) - dt.date.fromisoformat(previous) == ONE_DAY:
            blocks[-1].append(day)
        else:
            blocks.append([day])
    return blocks


def range_tags(days: list[str]) -> dict[str, str]:
    """The run tags of one run over `days` (consecutive, oldest first)."""
    return {RANGE_START_TAG: days[0], RANGE_END_TAG: days[-1]}
