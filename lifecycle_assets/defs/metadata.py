"""How numbers appear in the Dagster UI: four significant digits, not sixteen."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg

SIGNIFICANT_DIGITS = 4


def rounded(value: float) -> float:
    """`value` to four significant digits (0.8123456 -> 0.8123, 12345.6 -> 12350.0)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def rounded_metrics(
    metrics: Mapping[str, Any], prefix: str = "", skip: tuple[str, ...] = ("n",)
) -> dict[str, dg.MetadataValue]:
    """Numeric metrics as float metadata, rounded; counts (`n`) and non-numbers left out."""
    return {
        f"{prefix}{key}": dg.MetadataValue.float(rounded(float(value)))
        for key, value in metrics.items()
        if key not in skip and isinstance(value, int | float) and not isinstance(value, bool)
    }
