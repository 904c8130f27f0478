"""Score batches with the shadow model after their answers are sent, within a time budget.

The shadow never touches a response: answered batches are gathered for a moment and scored
together once, in a thread, at most one scoring at a time. Work arriving while the shadow is
still busy, a scoring that overruns the budget, one that fails, or a backlog past its bound is
skipped and counted (`lifecycle_shadow_skipped_total`); its rows are simply not logged, so shadow
mode costs the answered traffic a bounded share of the CPU.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import numpy as np
import polars as pl

from lifecycle_assets.registry.models import ModelRef
from lifecycle_assets.serving.metrics import PredictionMetrics
from lifecycle_assets.serving.model_set import SHADOW, score
from lifecycle_assets.serving.model_source import ServedModel

logger = logging.getLogger(__name__)


class ShadowScorer:
    """At most one shadow scoring in flight; counts what it skips and why."""

    def __init__(self, name: str, budget_ms: float, metrics: PredictionMetrics) -> None:
        self.name = name
        self.budget = budget_ms / 1000.0
        self.metrics = metrics
        self.busy = False
        self.skipped: dict[str, int] = {}

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.metrics.shadow_skipped.labels(self.name, reason).inc()

    async def score(self, shadow: ServedModel, frame: pl.DataFrame) -> np.ndarray | None:
        """The shadow's probabilities, or None when skipped (busy, over budget or failed)."""
        if self.busy:
            self.skip("busy")
            return None
        self.busy = True
        started = time.perf_counter()
        work = asyncio.ensure_future(asyncio.to_thread(score, shadow, frame))
        # The thread cannot be stopped; `busy` stays set until it ends so overruns do not pile up.
        work.add_done_callback(self._done)
        try:
            probabilities = await asyncio.wait_for(asyncio.shield(work), self.budget)
        except TimeoutError:
            self.skip("budget")
            return None
        except Exception:
            logger.exception("shadow v%s failed on %d rows", shadow.ref.version, frame.height)
            self.skip("error")
            return None
        if time.perf_counter() - started > self.budget:
            self.skip("budget")
            return None
        return probabilities

    def _done(self, work: asyncio.Future) -> None:
        self.busy = False
        if not work.cancelled():
            work.exception()  # retrieved, so an overrun's failure is not reported as unhandled


def shadow_rows(
    decisions: np.ndarray, scores: np.ndarray, answered: list[dict[str, Any]], ref: ModelRef
) -> list[dict[str, Any]]:
    """Log rows of the shadow's predictions, each pointing at the answer it mirrors."""
    return [
        {
            "prediction": decision,
            "score": value,
            "prediction_id": uuid.uuid4().hex,
            "record_id": row["record_id"],
            "model_name": ref.name,
            "model_version": ref.version,
            "variant": SHADOW,
            "shadow_of": row["prediction_id"],
        }
        for decision, value, row in zip(decisions.tolist(), scores.tolist(), answered, strict=True)
    ]
