"""Split a coalesced batch between `champion` and `canary`, stably per record.

A record goes to the canary when the SHA-256 of its id, read as a number in [0, 1), is below the
canary weight: the same id always lands on the same model (a retry is answered by the model that
answered first), different ids spread uniformly, and raising the weight only moves records from
champion to canary, never back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_SCALE = float(2**64)


def route_point(identifier: str) -> float:
    """Where `identifier` falls in [0, 1): the first 8 bytes of its SHA-256 as a fraction."""
    digest = hashlib.sha256(identifier.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def route_id(record_id: str | None, prediction_id: str) -> str:
    """What a record is routed by: its id, else (no id sent) its prediction id."""
    return prediction_id if record_id is None else record_id


def canary_mask(identifiers: Sequence[str], weight: float) -> np.ndarray:
    """True for the records the canary answers; all False when the weight is 0 (or no canary)."""
    if weight <= 0.0:
        return np.zeros(len(identifiers), dtype=bool)
    if weight >= 1.0:
        return np.ones(len(identifiers), dtype=bool)
    points = np.fromiter((route_point(i) for i in identifiers), dtype=float, count=len(identifiers))
    return points < weight
