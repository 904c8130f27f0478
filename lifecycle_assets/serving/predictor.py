"""Score validated batches of one model: coalescing, canary routing, shadow, prediction log.

Concurrent requests are coalesced: whatever arrived while the model was busy goes through
`compute_features` and `predict_scores` as one vectorized batch, so scikit-learn's per-call cost
(about 5 ms here whether for 1 row or 64) is paid once per batch, with no waiting timer at low
load (BentoML's adaptive batching, timer-based, answered 503 under load); a lone request is
scored at once (`coalescer.py`).

In registry mode the model set follows the registry (`watcher.py`): champion, canary and shadow
are swapped in as one immutable `ModelSet`, and each batch is scored by the set it started with.
The canary answers a stable share of records (`router.py`); the shadow scores each batch after it
is answered (`shadow.py`). A service serving several models holds one `Predictor` per model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bentoml
import numpy as np
import polars as pl

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.decision import decide
from lifecycle_assets.serving.coalescer import Coalescer, Pending
from lifecycle_assets.serving.drift_gauges import DriftGauges
from lifecycle_assets.serving.log_shipping import open_prediction_log
from lifecycle_assets.serving.metrics import prediction_metrics
from lifecycle_assets.serving.model_set import CANARY, CHAMPION, SHADOW, ModelSet, score_records
from lifecycle_assets.serving.model_source import ServedModel
from lifecycle_assets.serving.prediction_ids import new_prediction_id
from lifecycle_assets.serving.requests import (
    MAX_REPORTED_ERRORS,
    FieldError,
    RequestError,
    RequestValidator,
    ValidatedBatch,
)
from lifecycle_assets.serving.router import canary_mask, route_id
from lifecycle_assets.serving.shadow import ShadowScorer
from lifecycle_assets.serving.watcher import RegistryWatcher
from lifecycle_assets.spec import ModelSpec

if TYPE_CHECKING:
    from lifecycle_assets.registry.refs import ModelRef

logger = logging.getLogger(__name__)


def running_bento_tag() -> str | None:
    """The tag of the Bento this process serves, None under `bentoml serve <module>:<class>`."""
    version = bentoml.server_context.bento_version
    if not version or version == "not available":
        return None
    return f"{bentoml.server_context.bento_name}:{version}"


def _starts(pending: list[Pending]) -> list[int]:
    """The index of each request's first row in the coalesced batch."""
    starts, start = [], 0
    for item in pending:
        starts.append(start)
        start += len(item.batch.ids)
    return starts


class Predictor:
    """Scores validated batches with the current model set, coalescing concurrent requests."""

    def __init__(
        self, served: ServedModel, settings: Settings, shadow_budget_ms: float | None = None
    ) -> None:
        # Replaced whole by the registry watcher (from its thread): readers take one reference.
        self.models = ModelSet(champion=served)
        self.max_rows = settings.serving.max_batch_size
        self._validator = RequestValidator(served.loaded.spec, self.max_rows)
        self.coalescer = Coalescer(self.max_rows, self._answer)
        self.metrics = prediction_metrics()
        # Local, or shipped to the shared storage in team mode (log_shipping.py).
        self.log = open_prediction_log(settings, self.spec.name, self.metrics)
        self.drift = DriftGauges(settings.reports_dir, self.spec.name, self.metrics)
        budget = config.SHADOW_BUDGET_MS if shadow_budget_ms is None else shadow_budget_ms
        self.shadow = ShadowScorer(self.spec.name, budget, self.metrics, self.log.log)
        self.watcher: RegistryWatcher | None = None

    @property
    def served(self) -> ServedModel:
        return self.models.champion

    @property
    def spec(self) -> ModelSpec:
        return self.models.champion.loaded.spec

    @property
    def validator(self) -> RequestValidator:
        """Validates against the champion's spec; rebuilt when a champion brings a new spec."""
        spec = self.spec
        if self._validator.spec is not spec:
            self._validator = RequestValidator(spec, self.max_rows)
        return self._validator

    def refresh_drift(self) -> None:
        """Re-export drift gauges now if the shared drift report changed (`drift_gauges.py`)."""
        self.drift.refresh()

    async def predict(self, batch: ValidatedBatch) -> list[dict[str, Any]]:
        """The batch's answer rows: scored at once when the coalescer is idle, else with
        whatever else arrived meanwhile (`coalescer.py`)."""
        return await self.coalescer.submit(batch)

    def _answer(self, pending: list[Pending], loop: asyncio.AbstractEventLoop) -> None:
        """Score and answer `pending`, then log it in a later callback: the answers' tasks are
        woken (or, inline, return) before `_after_answers` runs, so the log never adds latency."""
        models = self.models
        pending = self._refuse_checked_against_another_spec(pending, models)
        if not pending:
            return
        try:
            scored = self._score_pending(pending, models)
        except Exception as error:
            logger.exception("scoring a batch of %d requests failed", len(pending))
            for item in pending:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        loop.call_soon(self._after_answers, models, *scored)

    def _after_answers(
        self,
        models: ModelSet,
        rows: list[dict[str, Any]],
        latencies: list[float],
        records: list[dict[str, Any]],
        frame: pl.DataFrame | None,
        counted: list[tuple[ModelRef, list[float]]],
    ) -> None:
        """Count, log and shadow an answered batch."""
        classifier = models.champion.loaded.spec.is_classifier
        for ref, chosen in counted:
            self.metrics.observe(ref.name, ref.version, chosen, classifier=classifier)
        self.log.log(rows, records, models, latencies)
        if models.shadow is not None and frame is not None:
            self.shadow.queue(models, frame, rows, records)
        if self.watcher is not None and (lost := self.watcher.lost).lost:
            # A canary or shadow the registry names does not serve: its share and its mirror
            # are counted, not silent (`lost_roles.py`).
            lost.count_rerouted(rows)
            if models.shadow is None and SHADOW in lost.lost:
                self.shadow.skip("lost")

    @property
    def log_failures(self) -> int:
        """Prediction log rows lost in this process (the writer never raises, it counts)."""
        return self.log.rows_lost

    def _split_score(
        self,
        models: ModelSet,
        frame: Callable[[], pl.DataFrame],
        records: list[dict[str, Any]],
        ids: list[str | None],
        prediction_ids: list[str],
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores and the canary mask (None without a canary): one vectorized call per model
        that answers (from the records when the model is compiled, else from the batch's frame,
        built on demand)."""
        canary = models.canary
        n = len(records)
        if canary is None:
            return score_records(models.champion, records, frame), None
        # Records without an id are routed by their prediction id.
        route_ids = [route_id(r, p) for r, p in zip(ids, prediction_ids, strict=True)]
        mask = canary_mask(route_ids, models.canary_weight)
        if not mask.any():
            return score_records(models.champion, records, frame), mask
        if mask.all():
            return score_records(canary, records, frame), mask
        scores = np.empty(n, dtype=float)
        chosen = mask.tolist()
        to_canary = [r for r, c in zip(records, chosen, strict=True) if c]
        to_champion = [r for r, c in zip(records, chosen, strict=True) if not c]
        scores[mask] = score_records(canary, to_canary, lambda: frame().filter(pl.Series(mask)))
        scores[~mask] = score_records(
            models.champion, to_champion, lambda: frame().filter(pl.Series(~mask))
        )
        return scores, mask

    def _score_pending(
        self, pending: list[Pending], models: ModelSet
    ) -> tuple[
        list[dict[str, Any]],
        list[float],
        list[dict[str, Any]],
        pl.DataFrame | None,
        list[tuple[ModelRef, list[float]]],
    ]:
        """Score, answer each request, and return the rows, per-row latencies and records to
        log, the frame (for the shadow; None without one) and the scores to count per version."""
        spec = models.champion.loaded.spec

        built: list[pl.DataFrame] = []

        def frame() -> pl.DataFrame:
            # Only scikit-learn and the shadow need the batch as a frame (built once); compiled
            # models score the records themselves.
            if not built:
                built.append(pl.concat([item.batch.frame for item in pending], how="vertical"))
            return built[0]

        if len(pending) == 1:  # the common case at low load: the request's own lists
            records, ids = pending[0].batch.records, pending[0].batch.ids
        else:
            records = [record for item in pending for record in item.batch.records]
            ids = [identifier for item in pending for identifier in item.batch.ids]
        # Always minted here: a client's record id may repeat (a re-scored application), a
        # prediction id never does.
        prediction_ids = [new_prediction_id() for _ in ids]
        values, mask = self._split_score(models, frame, records, ids, prediction_ids)
        if not np.isfinite(values).all():
            # Extreme but valid inputs can drive a model's output out of the float range
            # (a linear model's ±inf, NaN): no answer to send as JSON, so those requests are a
            # 422 naming the record, and are neither logged nor counted; the rest go on.
            keep, refused = self._refuse_non_finite(pending, values)
            pending = [item for item in pending if id(item) not in refused]
            built.clear()  # the shadow's frame: the requests answered only
            values = values[keep]
            mask = None if mask is None else mask[keep]
            chosen = keep.tolist()
            records = [r for r, k in zip(records, chosen, strict=True) if k]
            ids = [i for i, k in zip(ids, chosen, strict=True) if k]
            prediction_ids = [p for p, k in zip(prediction_ids, chosen, strict=True) if k]
            if not pending:
                return [], [], [], None, []
        answered = {False: (CHAMPION, models.champion.ref)}
        if models.canary is not None:
            answered[True] = (CANARY, models.canary.ref)
        classifier = spec.is_classifier
        decisions = decide(values, spec).tolist()
        scores = values.tolist()
        all_rows: list[dict[str, Any]] = []
        routed = [False] * len(ids) if mask is None else mask.tolist()
        for decision, value, to_canary, prediction_id, record_id in zip(
            decisions, scores, routed, prediction_ids, ids, strict=True
        ):
            variant, ref = answered[to_canary]
            # Classifiers answer the class and its probability, regressors the value alone.
            row: dict[str, Any] = (
                {"prediction": decision, "probability": value}
                if classifier
                else {"prediction": decision}
            )
            row["prediction_id"] = prediction_id
            row["record_id"] = record_id
            row["model_name"] = ref.name
            row["model_version"] = ref.version
            row["variant"] = variant
            all_rows.append(row)
        for item, first in zip(pending, _starts(pending), strict=True):
            # Values the spec's `on_out_of_range: flag` let through: answered and logged.
            for offset, flagged in enumerate(item.batch.flags):
                if flagged:
                    all_rows[first + offset]["flags"] = flagged
        start = 0
        latencies: list[float] = []
        for item in pending:
            rows = all_rows[start : start + len(item.batch.ids)]
            start += len(rows)
            if not item.future.done():
                item.future.set_result(rows)
            latencies += [(time.perf_counter() - item.queued_at) * 1000.0] * len(rows)
        # Counted once the answers are out, with the log: off the request's critical path.
        counted = (
            [(models.champion.ref, scores)]
            if mask is None
            else [
                (ref, chosen)
                for to_canary, (_, ref) in answered.items()
                if (chosen := values[mask == to_canary].tolist())
            ]
        )
        shadow_frame = frame() if models.shadow is not None else None
        return all_rows, latencies, records, shadow_frame, counted

    @staticmethod
    def _refuse_checked_against_another_spec(
        pending: list[Pending], models: ModelSet
    ) -> list[Pending]:
        """The requests validated against the fields of the champion now served; the others get
        a 503 asking to send them again, and are neither scored, logged nor counted.

        A request is validated when it arrives and scored when its batch is flushed: a new
        champion whose spec has other fields can swap in between (under load, during a
        promotion), and records checked against the old fields must not reach it. The same
        fields (any version of an unchanged spec) are the same check: those requests go on."""
        fields = models.champion.loaded.spec.features
        kept = [
            item
            for item in pending
            if item.batch.features is fields or item.batch.features == fields
        ]
        if len(kept) == len(pending):
            return pending
        ref = models.champion.ref
        message = (
            f"{ref.name} v{ref.version} became the champion while this request waited, with other "
            "fields than the request was checked against; send it again"
        )
        answered = {id(item) for item in kept}
        for item in pending:
            if id(item) not in answered and not item.future.done():
                item.future.set_exception(RequestError(503, message))
        return kept

    @staticmethod
    def _refuse_non_finite(
        pending: list[Pending], values: np.ndarray
    ) -> tuple[np.ndarray, set[int]]:
        """Fail each request holding a score that is no finite number with a 422 naming its
        records; returns the mask of the other requests' rows and the ids of those refused."""
        keep = np.ones(len(values), dtype=bool)
        refused: set[int] = set()
        for item, first in zip(pending, _starts(pending), strict=True):
            rows = slice(first, first + len(item.batch.ids))
            bad = np.flatnonzero(~np.isfinite(values[rows])).tolist()
            if not bad:
                continue
            keep[rows] = False
            refused.add(id(item))
            message = (
                "the model's output is not a finite number for these values; "
                "check them for extremes"
            )
            errors = [FieldError("<record>", message, index) for index in bad]
            error = RequestError(422, f"records[{bad[0]}]: {message}", errors[:MAX_REPORTED_ERRORS])
            if not item.future.done():
                item.future.set_exception(error)
        return keep, refused

    def metadata(self, *, admin: bool = False) -> dict[str, Any]:
        """What `/metadata` answers; `admin` adds the full error texts (for `/admin/status`)."""
        served = self.served
        ref = served.ref
        # Served from a built Bento: that Bento. From the registry: the Bento built for the
        # served version (`bento_service` tags it), as the version's tags read when it loaded.
        bento_tag = running_bento_tag() or ref.tags.get(config.TAG_BENTO_TAG)
        return {
            "model_name": ref.name,
            "model_version": ref.version,
            "run_id": ref.run_id,
            "training_data_digest": ref.training_digest,
            "artifact_sha256": ref.artifact_sha256,
            "bento_tag": bento_tag,
            "bento_model_tag": served.bento_model_tag,
            "source": served.source,
            "loaded_at": served.loaded_at,
            "scorer": served.describe_scorer(),
            "prediction_log_failures": self.log_failures,
            "prediction_log": self.log.status(),
            "health": {"prediction_log": self.log.health()},
            "serving": self.models.describe(),
            "shadow_skipped": dict(self.shadow.skipped),
            **(
                self.watcher.status(admin=admin)
                if self.watcher
                else {"follows_registry": False, "degraded": None, "lost_roles": {}}
            ),
        }
