"""Automated canary analysis: compare the canary's live answers with the champion's.

Both answered the same traffic (the split is random per request id), so their score
distributions should match unless the canary behaves differently. The verdict is `wait` until
each variant has enough rows, `rollback` as soon as any limit is crossed, and `promote` when
none is (and, if required, once enough labels have arrived to compare AUC and accuracy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from lifecycle_assets.config import CanaryThresholds
from lifecycle_assets.ml.drift import PSI_GROUPS, psi_from_counts

VARIANT = "variant"
VERSION = "model_version"
SCORE = "score"
LABEL = "label"
# Optional columns: a row flagged failed (the service answered an error) and its latency.
FAILED = "failed"
LATENCY_MS = "latency_ms"
CHAMPION, CANARY = "champion", "canary"

Decision = Literal["promote", "rollback", "wait"]


@dataclass(frozen=True)
class VariantStats:
    """What one variant did on the day's traffic."""

    rows: int
    versions: tuple[str, ...]
    error_rate: float
    mean_score: float | None
    p95_latency_ms: float | None
    labelled_rows: int
    roc_auc: float | None
    accuracy: float | None
    # Regressors: mean absolute error on the labelled rows.
    mae: float | None = None

    @property
    def quality(self) -> float | None:
        """The labelled metric a promotion waits for: ROC AUC, or MAE for regressors."""
        return self.roc_auc if self.mae is None else self.mae


@dataclass(frozen=True)
class CanaryVerdict:
    """promote / rollback / wait, the reasons, and the numbers behind them."""

    decision: Decision
    reasons: tuple[str, ...]
    champion: VariantStats
    canary: VariantStats
    score_psi: float | None = None
    score_ks: float | None = None
    mean_score_shift: float | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)

    @property
    def canary_version(self) -> str | None:
        return self.canary.versions[-1] if self.canary.versions else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "canary_version": self.canary_version}


def score_psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of `current` against `reference`, on reference deciles."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, PSI_GROUPS + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    return psi_from_counts(np.histogram(reference, edges)[0], np.histogram(current, edges)[0])


def variant_stats(rows: pl.DataFrame, regression: bool = False) -> VariantStats:
    """Rows, versions, error rate, scores, latency and (where labelled) AUC or MAE of one
    variant."""
    from sklearn import metrics as skm

    if rows.is_empty():
        return VariantStats(0, (), 0.0, None, None, 0, None, None)
    scores = rows[SCORE].cast(pl.Float64).drop_nulls().to_numpy()
    failed = rows[FAILED].cast(pl.Boolean).fill_null(False) if FAILED in rows.columns else None
    latency = rows[LATENCY_MS].cast(pl.Float64).drop_nulls() if LATENCY_MS in rows.columns else None
    labelled = rows.drop_nulls([SCORE, LABEL]) if LABEL in rows.columns else rows.head(0)
    y = labelled[LABEL].cast(pl.Float64).to_numpy() if labelled.height else np.array([])
    p = labelled[SCORE].cast(pl.Float64).to_numpy() if labelled.height else np.array([])
    if regression:
        classified: dict[str, float | None] = {"roc_auc": None, "accuracy": None}
    else:
        classified = {
            "roc_auc": float(skm.roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None,
            "accuracy": float(np.mean((p >= 0.5) == y)) if y.size else None,
        }
    return VariantStats(
        rows=rows.height,
        versions=tuple(sorted(rows[VERSION].cast(pl.String).drop_nulls().unique().to_list())),
        error_rate=float(failed.mean()) if failed is not None else 0.0,
        mean_score=float(scores.mean()) if scores.size else None,
        p95_latency_ms=float(latency.quantile(0.95))
        if latency is not None and latency.len()
        else None,
        labelled_rows=labelled.height,
        **classified,
        mae=float(np.mean(np.abs(y - p))) if regression and y.size else None,
    )


def _limit_failures(champion: VariantStats, canary: VariantStats, t: CanaryThresholds) -> list[str]:
    failures = []
    if canary.error_rate - champion.error_rate > t.max_error_rate_increase:
        failures.append(
            f"error rate {canary.error_rate:.3f} vs champion {champion.error_rate:.3f} "
            f"(max increase {t.max_error_rate_increase})"
        )
    if canary.p95_latency_ms and champion.p95_latency_ms:
        ratio = canary.p95_latency_ms / champion.p95_latency_ms
        if ratio > t.max_latency_ratio:
            failures.append(f"p95 latency {ratio:.2f}x the champion's (max {t.max_latency_ratio})")
    enough = min(canary.labelled_rows, champion.labelled_rows) >= t.min_labelled_rows
    auc = enough and canary.roc_auc is not None and champion.roc_auc is not None
    if auc and champion.roc_auc - canary.roc_auc > t.max_auc_drop:
        failures.append(
            f"ROC AUC {canary.roc_auc:.3f} vs champion {champion.roc_auc:.3f} "
            f"(max drop {t.max_auc_drop})"
        )
    if enough and canary.mae is not None and champion.mae:
        ratio = canary.mae / champion.mae
        if ratio - 1 > t.max_mae_increase:
            failures.append(
                f"MAE {canary.mae:.3f} is {ratio:.2f}x the champion's {champion.mae:.3f} "
                f"(max increase {t.max_mae_increase:.0%})"
            )
    accuracy = enough and canary.accuracy is not None and champion.accuracy is not None
    if accuracy and champion.accuracy - canary.accuracy > t.max_accuracy_drop:
        failures.append(
            f"accuracy {canary.accuracy:.3f} vs champion {champion.accuracy:.3f} "
            f"(max drop {t.max_accuracy_drop})"
        )
    return failures


def analyze_canary(
    log: pl.DataFrame,
    thresholds: CanaryThresholds = CanaryThresholds(),
    task: str = "binary_classification",
) -> CanaryVerdict:
    """The verdict on the canary from one prediction log (shadow rows are ignored).

    A regressor's mean score shift is judged relative to the champion's mean score, since its
    scores are in target units, not probabilities.
    """
    from scipy import stats

    regression = task == "regression"
    has_rows = {VARIANT, SCORE, VERSION} <= set(log.columns)
    rows = {
        name: log.filter(pl.col(VARIANT) == name) if has_rows else log.head(0)
        for name in (CHAMPION, CANARY)
    }
    champion, canary = (variant_stats(rows[name], regression) for name in (CHAMPION, CANARY))
    limits = asdict(thresholds)
    if min(champion.rows, canary.rows) < thresholds.min_rows:
        reason = (
            f"not enough traffic yet: {canary.rows} canary and {champion.rows} champion rows "
            f"(need {thresholds.min_rows} each)"
        )
        return CanaryVerdict("wait", (reason,), champion, canary, thresholds=limits)
    reference = rows[CHAMPION][SCORE].cast(pl.Float64).drop_nulls().to_numpy()
    current = rows[CANARY][SCORE].cast(pl.Float64).drop_nulls().to_numpy()
    if min(reference.size, current.size) < thresholds.min_rows:
        # Rows without a score (failed answers) have no distribution to compare: their error
        # rate may still roll back, else wait; never a PSI or KS made up from no scores.
        failures = _limit_failures(champion, canary, thresholds)
        if failures:
            return CanaryVerdict("rollback", tuple(failures), champion, canary, thresholds=limits)
        reason = (
            f"not enough scores yet: {current.size} canary and {reference.size} champion rows "
            f"carry a score (need {thresholds.min_rows} each)"
        )
        return CanaryVerdict("wait", (reason,), champion, canary, thresholds=limits)
    psi = score_psi(reference, current)
    ks = float(stats.ks_2samp(reference, current).statistic)
    shift = float(current.mean() - reference.mean())
    if regression and reference.mean():
        shift /= abs(float(reference.mean()))
    failures = _limit_failures(champion, canary, thresholds)
    if psi > thresholds.max_score_psi:
        failures.append(f"score PSI {psi:.3f} (max {thresholds.max_score_psi})")
    if ks > thresholds.max_score_ks:
        failures.append(f"score KS {ks:.3f} (max {thresholds.max_score_ks})")
    if abs(shift) > thresholds.max_mean_score_shift:
        failures.append(f"mean score shift {shift:+.3f} (max {thresholds.max_mean_score_shift})")
    numbers = {"score_psi": psi, "score_ks": ks, "mean_score_shift": shift, "thresholds": limits}
    if failures:
        return CanaryVerdict("rollback", tuple(failures), champion, canary, **numbers)
    labelled = min(canary.labelled_rows, champion.labelled_rows)
    if thresholds.require_labels and (
        labelled < thresholds.min_labelled_rows or canary.quality is None
    ):
        reason = (
            f"scores agree (PSI {psi:.3f}, KS {ks:.3f}); waiting for labels: {labelled} "
            f"labelled rows per variant, need {thresholds.min_labelled_rows}"
        )
        return CanaryVerdict("wait", (reason,), champion, canary, **numbers)
    reason = f"within every limit: score PSI {psi:.3f}, KS {ks:.3f}, mean shift {shift:+.3f}"
    if canary.roc_auc is not None and champion.roc_auc is not None:
        reason += f", ROC AUC {canary.roc_auc:.3f} vs {champion.roc_auc:.3f}"
    if canary.mae is not None and champion.mae is not None:
        reason += f", MAE {canary.mae:.3f} vs {champion.mae:.3f}"
    return CanaryVerdict("promote", (reason,), champion, canary, **numbers)
