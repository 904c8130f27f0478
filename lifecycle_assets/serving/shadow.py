"""Score batches with the shadow model after their answers are sent, within a time budget.

The shadow never touches a response: answered batches are gathered for a moment and scored
together once, in a thread, at most one scoring at a time. Work arriving while the shadow is
still busy, a scoring that overruns the budget, one that fails, or a backlog past its bound is
skipped and counted (`lifecycle_shadow_skipped_total`); its rows are simply not logged, so shadow
mode costs the answered traffic a bounded share of the CPU. A shadow the registry names that
does not serve counts every batch it misses under `lost` (`lost_roles.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from lifecycle_assets.ml.decision import decide
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.metrics import PredictionMetrics
from lifecycle_assets.serving.model_set import SHADOW, ModelSet, score
from lifecycle_assets.serving.model_source import ServedModel
from lifecycle_assets.serving.prediction_ids import new_prediction_id

logger = logging.getLogger(__name__)


# Shadow work waits this long to be scored together, and is dropped (counted) past this backlog.
SHADOW_GATHER_SECONDS = 0.1
SHADOW_BACKLOG_ROWS = 10_000


class Answered(NamedTuple):
    """What the predictor hands over: the model set that answered, its frame, answers, records."""

    models: ModelSet
    frame: pl.DataFrame
    rows: list[dict[str, Any]]
    records: list[dict[str, Any]]


WriteLog = Callable[[list[dict[str, Any]], list[dict[str, Any]], ModelSet], None]


class ShadowScorer:
    """Gathers answered batches, scores them with the shadow, logs the rows; at most one
    scoring in flight, and counts what it skips and why."""

    def __init__(
        self, name: str, budget_ms: float, metrics: PredictionMetrics, write_log: WriteLog
    ) -> None:
        self.name = name
        self.budget = budget_ms / 1000.0
        self.metrics = metrics
        self.write_log = write_log
        self.busy = False
        self.skipped: dict[str, int] = {}
        self._pending: list[Answered] = []
        self._pending_rows = 0  # kept, not summed on every queue: the backlog may be long
        self._flush: asyncio.Task[None] | None = None

    def queue(
        self,
        models: ModelSet,
        frame: pl.DataFrame,
        rows: list[dict[str, Any]],
        records: list[dict[str, Any]],
    ) -> None:
        """Gather an answered batch; one flush scores what gathered together shortly after.

        A 64-row call costs about what a 1-row call does, so scoring every request one by one
        would spend a model call per request on the shadow; gathered, its share of the CPU stays
        small at any traffic level (measured: the p50 cost of shadow mode at concurrency 1).
        """
        if self._pending_rows >= SHADOW_BACKLOG_ROWS:
            self.skip("backlog")
            return
        self._pending.append(Answered(models, frame, rows, records))
        self._pending_rows += frame.height
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._flush_pending())

    async def _flush_pending(self) -> None:
        """Score what gathered, then what gathered meanwhile, until nothing is left: a batch
        queued while this task scores finds it not done and starts no task of its own."""
        while True:
            await asyncio.sleep(SHADOW_GATHER_SECONDS)
            pending, self._pending, self._pending_rows = self._pending, [], 0
            if not pending:
                return
            groups: dict[int, list[Answered]] = {}
            for item in pending:
                groups.setdefault(id(item.models.shadow), []).append(item)
            for group in groups.values():
                await self._score_and_log(group)

    async def _score_and_log(self, group: list[Answered]) -> None:
        """Score answered batches (sharing one shadow) together and log the rows; never raises,
        never answers."""
        models = group[0].models
        shadow = models.shadow
        assert shadow is not None
        scores = await self.score(shadow, pl.concat([item.frame for item in group]))
        if scores is None:
            return
        rows = [row for item in group for row in item.rows]
        records = [record for item in group for record in item.records]
        ref = shadow.ref
        logged = shadow_rows(decide(scores, shadow.loaded.spec), scores, rows, ref)
        self.metrics.shadow_predictions.labels(ref.name, ref.version).inc(len(logged))
        self.write_log(logged, records, models)

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
            "prediction_id": new_prediction_id(),
            "record_id": row["record_id"],
            "model_name": ref.name,
            "model_version": ref.version,
            "variant": SHADOW,
            "shadow_of": row["prediction_id"],
        }
        for decision, value, row in zip(decisions.tolist(), scores.tolist(), answered, strict=True)
    ]
