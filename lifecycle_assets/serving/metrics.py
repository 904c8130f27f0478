"""Prometheus metrics of the predictions themselves, beside BentoML's latency and error metrics.

`prometheus_client` is imported when the service starts, not at module import: BentoML sets
PROMETHEUS_MULTIPROC_DIR in the worker after importing the service module, and a client
imported earlier would write to no file that `/metrics` reads.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
# Regressors' predicted values span orders of magnitude: 0, then powers of two up to about 1e6.
VALUE_BUCKETS = (0.0, *(2.0**i for i in range(-4, 21)))


class PredictionMetrics:
    """Counters and the score histogram, labelled by model name and version."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self.predictions = prom.Counter(
            "lifecycle_predictions",
            "Predictions answered, by model and version.",
            ["model_name", "model_version"],
        )
        self.scores = prom.Histogram(
            "lifecycle_prediction_score",
            "Predicted probability of the positive class (classifiers).",
            ["model_name", "model_version"],
            buckets=SCORE_BUCKETS,
        )
        self.values = prom.Histogram(
            "lifecycle_prediction_value",
            "Predicted value (regressors).",
            ["model_name", "model_version"],
            buckets=VALUE_BUCKETS,
        )
        self.rejected = prom.Counter(
            "lifecycle_rejected_requests",
            "Requests refused (bad input, or a score that is no finite number), by HTTP status.",
            ["model_name", "status"],
        )
        self.admin_refusals = prom.Counter(
            "lifecycle_admin_refusals",
            "Admin requests refused: 401 a missing or wrong token, 429 throttled after too many.",
            ["status"],
        )
        # Gauges in BentoML's multiprocess registry need a mode: the newest value wins.
        self.refused_connections = prom.Counter(
            "lifecycle_refused_connections",
            "Connections answered 503 and closed at once: too many open from one address "
            "(per_client) or in all (total).",
            ["reason"],
        )
        self.drift_psi = prom.Gauge(
            "lifecycle_feature_drift_psi",
            "PSI of each feature (and __score__) in the newest drift report.",
            ["model_name", "feature"],
            multiprocess_mode="mostrecent",
        )
        self.drifted = prom.Gauge(
            "lifecycle_drift_detected",
            "1 when the newest drift report says the traffic drifted.",
            ["model_name"],
            multiprocess_mode="mostrecent",
        )
        # Every answered prediction is either logged (rows) or counted lost (failures).
        self.log_failures = prom.Counter(
            "lifecycle_prediction_log_failures",
            "Prediction log rows that could not be written (lost).",
            ["model_name"],
        )
        self.logged_rows = prom.Counter(
            "lifecycle_prediction_log_rows",
            "Prediction log rows written.",
            ["model_name"],
        )
        self.log_write_errors = prom.Counter(
            "lifecycle_prediction_log_write_errors",
            "Failed prediction log writes, by errno name (ENOSPC, EROFS, EIO...).",
            ["model_name", "error"],
        )
        self.swap_failures = prom.Counter(
            "lifecycle_model_swap_failures",
            "Registry versions refused by the service (load, verify or smoke prediction failed).",
            ["model_name", "role"],
        )
        self.swaps = prom.Counter(
            "lifecycle_model_swaps",
            "Registry versions the service swapped in, by role.",
            ["model_name", "role"],
        )
        self.degraded = prom.Gauge(
            "lifecycle_serving_degraded",
            "1 while the champion alias names a version that cannot serve and an earlier good "
            "version serves instead.",
            ["model_name"],
            multiprocess_mode="mostrecent",
        )
        self.rollout_lost = prom.Gauge(
            "lifecycle_rollout_lost",
            "1 while the canary or shadow the registry or the ledger names does not serve "
            "(refused, or its alias lost): the champion answers, `/readyz` says why.",
            ["model_name", "role"],
            multiprocess_mode="mostrecent",
        )
        self.canary_rerouted = prom.Counter(
            "lifecycle_canary_rerouted",
            "Records the ledger's weight routes to a canary that does not serve, answered by "
            "the champion instead.",
            ["model_name", "canary_version"],
        )
        self.shadow_predictions = prom.Counter(
            "lifecycle_shadow_predictions",
            "Rows scored by the shadow model and logged, never answered.",
            ["model_name", "model_version"],
        )
        # Labelled series by labels: looking labels up costs more than recording a value.
        self._observed: dict[tuple[str, str, bool], tuple[Any, Any]] = {}
        self.shadow_skipped = prom.Counter(
            "lifecycle_shadow_skipped",
            "Batches the shadow model did not score: over budget, busy, failed, or lost (the "
            "registry's shadow does not serve).",
            ["model_name", "reason"],
        )

    def observe(
        self, name: str, version: str, scores: Sequence[float], *, classifier: bool = True
    ) -> None:
        """Count answers and record their scores: probabilities, or a regressor's values."""
        key = (name, version, classifier)
        series = self._observed.get(key)
        if series is None:
            histograms = self.scores if classifier else self.values
            series = (self.predictions.labels(name, version), histograms.labels(name, version))
            self._observed[key] = series
        counter, histogram = series
        counter.inc(len(scores))
        for score in scores:
            histogram.observe(score)

    def export_drift(self, name: str, latest: dict) -> None:
        """Publish the newest drift report's scores (as written by the drift_report asset)."""
        for feature, psi in latest.get("psi", {}).items():
            # null: a PSI that could not be computed (strict JSON has no NaN); NaN on the gauge.
            self.drift_psi.labels(name, feature).set(float("nan") if psi is None else psi)
        self.drifted.labels(name).set(1.0 if latest.get("drifted") else 0.0)


@functools.cache
def prediction_metrics() -> PredictionMetrics:
    """One set per process: Prometheus refuses to register the same metric twice."""
    return PredictionMetrics()
