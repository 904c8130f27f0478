"""Classification, calibration, slice and fairness metrics on plain numpy arrays.

Every function takes `y_true` (0/1 ints), `proba` (positive-class probabilities) and, for
slices, `groups` (the sensitive attribute as strings), so the pipeline, the CLI and the tests
compute each number the same way. Undefined metrics raise or come back as null: a made-up 0.0
would let a broken model pass a gate. Regressors' counterparts are in `regression_metrics.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl

SLICE_SCHEMA: dict[str, Any] = {
    "group": pl.String,
    "n": pl.Int64,
    "positives": pl.Int64,
    "positive_rate": pl.Float64,
    "predicted_positive_rate": pl.Float64,
    "tpr": pl.Float64,
    "fpr": pl.Float64,
    "precision": pl.Float64,
    "roc_auc": pl.Float64,
    "reported": pl.Boolean,
}


def _as_arrays(y_true: Any, proba: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(proba, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} rows but proba has {p.size}")
    if y.size == 0:
        raise ValueError("cannot compute metrics on an empty set")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("proba must be finite probabilities in [0, 1]")
    return y, p


def _require_both_classes(y: np.ndarray) -> None:
    if np.unique(y).size < 2:
        raise ValueError(
            f"y_true holds only class {int(y[0])} ({y.size} rows): ROC AUC and log loss are "
            "undefined; the evaluation set needs both positives and negatives"
        )


def confusion_counts(y_true: Any, proba: Any, threshold: float = 0.5) -> dict[str, int]:
    """Counts of the confusion matrix at `threshold` (a score >= threshold is positive)."""
    y, p = _as_arrays(y_true, proba)
    pred = (p >= threshold).astype(int)
    return {
        "tn": int(((y == 0) & (pred == 0)).sum()),
        "fp": int(((y == 0) & (pred == 1)).sum()),
        "fn": int(((y == 1) & (pred == 0)).sum()),
        "tp": int(((y == 1) & (pred == 1)).sum()),
    }


def classification_metrics(y_true: Any, proba: Any, threshold: float = 0.5) -> dict[str, float]:
    """Ranking, thresholded and probabilistic metrics; raises if only one class is present."""
    from sklearn import metrics as skm

    y, p = _as_arrays(y_true, proba)
    _require_both_classes(y)
    pred = (p >= threshold).astype(int)
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier_score": float(skm.brier_score_loss(y, p)),
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float(pred.mean()),
        "n": float(y.size),
    }


def calibration_table(y_true: Any, proba: Any, bins: int = 10) -> pl.DataFrame:
    """Equal-width reliability table over [0, 1]; bins without rows are dropped."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    y, p = _as_arrays(y_true, proba)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # The last bin is closed on the right so that a score of exactly 1.0 is counted.
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        if not mask.any():
            continue
        rows.append(
            {
                "bin_lower": float(edges[b]),
                "bin_upper": float(edges[b + 1]),
                "count": int(mask.sum()),
                "mean_predicted": float(p[mask].mean()),
                "observed_rate": float(y[mask].mean()),
            }
        )
    schema = {
        "bin_lower": pl.Float64,
        "bin_upper": pl.Float64,
        "count": pl.Int64,
        "mean_predicted": pl.Float64,
        "observed_rate": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def expected_calibration_error(table: pl.DataFrame) -> float:
    """Count-weighted mean gap between predicted and observed rates across bins."""
    total = int(table["count"].sum()) if table.height else 0
    if total == 0:
        raise ValueError("calibration table is empty: no rows to compute ECE from")
    gaps = (table["mean_predicted"] - table["observed_rate"]).abs()
    return float((gaps * table["count"]).sum() / total)


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def group_masks(groups: Any, n: int) -> Iterator[tuple[str, np.ndarray]]:
    """Each group of the sensitive attribute (as a string, sorted) with its row mask."""
    g = np.asarray(groups).astype(str).ravel()
    if g.size != n:
        raise ValueError(f"groups has {g.size} rows but y_true has {n}")
    for group in sorted(set(g.tolist())):
        yield group, g == group


def slice_metrics(
    y_true: Any,
    proba: Any,
    groups: Any,
    threshold: float = 0.5,
    min_slice_size: int = 30,
) -> pl.DataFrame:
    """One row per group; `reported` marks slices large and varied enough to compare."""
    from sklearn import metrics as skm

    y, p = _as_arrays(y_true, proba)
    rows = []
    for group, mask in group_masks(groups, y.size):
        ys, ps = y[mask], p[mask]
        counts = confusion_counts(ys, ps, threshold)
        n, positives = int(ys.size), int(ys.sum())
        both_classes = 0 < positives < n
        rows.append(
            {
                "group": group,
                "n": n,
                "positives": positives,
                "positive_rate": positives / n,
                "predicted_positive_rate": (counts["tp"] + counts["fp"]) / n,
                "tpr": _rate(counts["tp"], counts["tp"] + counts["fn"]),
                "fpr": _rate(counts["fp"], counts["fp"] + counts["tn"]),
                "precision": _rate(counts["tp"], counts["tp"] + counts["fp"]),
                "roc_auc": float(skm.roc_auc_score(ys, ps)) if both_classes else None,
                "reported": bool(n >= min_slice_size and both_classes),
            }
        )
    return pl.DataFrame(rows, schema=SLICE_SCHEMA)


def spread(frame: pl.DataFrame, column: str) -> float:
    """Max minus min of a column over its non-null values (0.0 for none)."""
    values = frame[column].drop_nulls()
    return float(values.max() - values.min()) if values.len() else 0.0


def fairness_gaps(slices: pl.DataFrame) -> dict[str, Any]:
    """Max-minus-min gaps across reported slices; raises if fewer than two can be compared."""
    reported = slices.filter(pl.col("reported"))
    if reported.height < 2:
        raise ValueError(
            f"fairness gaps need at least 2 reported slices, got {reported.height} of "
            f"{slices.height}: slices need min_slice_size rows and both classes to be compared"
        )
    tpr_gap = spread(reported, "tpr")
    fpr_gap = spread(reported, "fpr")
    return {
        "demographic_parity_difference": spread(reported, "predicted_positive_rate"),
        "equal_opportunity_difference": tpr_gap,
        "equalized_odds_difference": max(tpr_gap, fpr_gap),
        "auc_gap": spread(reported, "roc_auc"),
        "groups_compared": reported["group"].to_list(),
        "groups_excluded": slices.filter(~pl.col("reported"))["group"].to_list(),
    }
