"""Classification and regression metrics, calibration, slices and fairness on numpy arrays.

Classification functions take `y_true` (0/1 ints) and `proba` (positive-class probabilities),
regression ones `y_true` and `predicted` values, and slices `groups` (the sensitive attribute as
strings), so the pipeline, the CLI and the tests compute each number the same way. Undefined
metrics raise or come back as null: a made-up 0.0 would let a broken model pass a gate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn import metrics as skm

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


def slice_metrics(
    y_true: Any,
    proba: Any,
    groups: Any,
    threshold: float = 0.5,
    min_slice_size: int = 30,
) -> pl.DataFrame:
    """One row per group; `reported` marks slices large and varied enough to compare."""
    y, p = _as_arrays(y_true, proba)
    g = np.asarray(groups).astype(str).ravel()
    if g.shape != y.shape:
        raise ValueError(f"groups has {g.size} rows but y_true has {y.size}")
    rows = []
    for group in sorted(set(g.tolist())):
        mask = g == group
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


def _spread(frame: pl.DataFrame, column: str) -> float:
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
    tpr_gap = _spread(reported, "tpr")
    fpr_gap = _spread(reported, "fpr")
    return {
        "demographic_parity_difference": _spread(reported, "predicted_positive_rate"),
        "equal_opportunity_difference": tpr_gap,
        "equalized_odds_difference": max(tpr_gap, fpr_gap),
        "auc_gap": _spread(reported, "roc_auc"),
        "groups_compared": reported["group"].to_list(),
        "groups_excluded": slices.filter(~pl.col("reported"))["group"].to_list(),
    }


# --- Regression -----------------------------------------------------------------------------

REGRESSION_SLICE_SCHEMA: dict[str, Any] = {
    "group": pl.String,
    "n": pl.Int64,
    "mean_target": pl.Float64,
    "mean_prediction": pl.Float64,
    "mae": pl.Float64,
    "rmse": pl.Float64,
    "bias": pl.Float64,
    "reported": pl.Boolean,
}


def _as_regression_arrays(y_true: Any, predicted: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} rows but predictions have {p.size}")
    if y.size == 0:
        raise ValueError("cannot compute metrics on an empty set")
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise ValueError("targets and predictions must be finite numbers")
    return y, p


def regression_metrics(y_true: Any, predicted: Any) -> dict[str, float]:
    """Error and explained-variance metrics; raises if the target is constant (R² undefined)."""
    y, p = _as_regression_arrays(y_true, predicted)
    if np.ptp(y) == 0:
        raise ValueError(
            f"y_true is constant ({y[0]} on {y.size} rows): R² is undefined; the evaluation set "
            "needs varying targets"
        )
    return {
        "r2": float(skm.r2_score(y, p)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y, p))),
        "mae": float(skm.mean_absolute_error(y, p)),
        "mean_target": float(y.mean()),
        "mean_prediction": float(p.mean()),
        "n": float(y.size),
    }


def regression_calibration_table(y_true: Any, predicted: Any, bins: int = 10) -> pl.DataFrame:
    """Predicted versus observed mean target in equal-count bins of the prediction.

    Same columns as `calibration_table` (so one plot and one card section serve both tasks);
    `observed_rate` holds the observed mean target of the bin.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    y, p = _as_regression_arrays(y_true, predicted)
    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, bins + 1)))
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(edges.size - 2, 0))
    rows = []
    for b in range(max(edges.size - 1, 1)):
        mask = index == b
        if not mask.any():
            continue
        rows.append(
            {
                "bin_lower": float(edges[b]),
                "bin_upper": float(edges[min(b + 1, edges.size - 1)]),
                "count": int(mask.sum()),
                "mean_predicted": float(p[mask].mean()),
                "observed_rate": float(y[mask].mean()),
            }
        )
    return pl.DataFrame(rows, schema=calibration_table([0, 1], [0.0, 1.0]).schema)


def relative_calibration_error(table: pl.DataFrame, y_true: Any) -> float:
    """Count-weighted mean |predicted - observed| across bins, relative to the mean |target|."""
    scale = float(np.abs(np.asarray(y_true, dtype=float)).mean())
    if scale == 0:
        raise ValueError("the target is zero everywhere: a relative calibration error is undefined")
    return expected_calibration_error(table) / scale


def regression_slice_metrics(
    y_true: Any, predicted: Any, groups: Any, min_slice_size: int = 30
) -> pl.DataFrame:
    """One row per group: size, means, errors and bias; `reported` marks slices big enough."""
    y, p = _as_regression_arrays(y_true, predicted)
    g = np.asarray(groups).astype(str).ravel()
    if g.shape != y.shape:
        raise ValueError(f"groups has {g.size} rows but y_true has {y.size}")
    rows = []
    for group in sorted(set(g.tolist())):
        mask = g == group
        ys, ps = y[mask], p[mask]
        rows.append(
            {
                "group": group,
                "n": int(ys.size),
                "mean_target": float(ys.mean()),
                "mean_prediction": float(ps.mean()),
                "mae": float(np.abs(ys - ps).mean()),
                "rmse": float(np.sqrt(((ys - ps) ** 2).mean())),
                "bias": float((ps - ys).mean()),
                "reported": bool(ys.size >= min_slice_size),
            }
        )
    return pl.DataFrame(rows, schema=REGRESSION_SLICE_SCHEMA)


def regression_fairness_gaps(slices: pl.DataFrame, overall_mae: float) -> dict[str, Any]:
    """The spread of MAE across reported slices, absolute and relative to the overall MAE."""
    reported = slices.filter(pl.col("reported"))
    if reported.height < 2:
        raise ValueError(
            f"fairness gaps need at least 2 reported slices, got {reported.height} of "
            f"{slices.height}: slices need min_slice_size rows to be compared"
        )
    if overall_mae <= 0:
        raise ValueError("overall MAE is 0: a relative error gap is undefined")
    gap = _spread(reported, "mae")
    return {
        "mae_gap": gap,
        "relative_mae_gap": gap / overall_mae,
        "bias_gap": _spread(reported, "bias"),
        "groups_compared": reported["group"].to_list(),
        "groups_excluded": slices.filter(~pl.col("reported"))["group"].to_list(),
    }


def task_metrics(task: str, y_true: Any, scores: Any) -> dict[str, float]:
    """The metrics of a task: classification on probabilities, regression on predicted values."""
    if task == "regression":
        return regression_metrics(y_true, scores)
    return classification_metrics(y_true, scores)
