"""Regression metrics, calibration, slices and fairness on plain numpy arrays.

The regressor's counterparts of `metrics.py`, with the same table shapes where a table is shared
(calibration), so plots and the model card serve both tasks. Undefined metrics raise: a made-up
number would let a broken model pass a gate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from lifecycle_assets.ml.metrics import (
    calibration_table,
    expected_calibration_error,
    group_masks,
    spread,
)

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
    from sklearn import metrics as skm

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
    rows = []
    for group, mask in group_masks(groups, y.size):
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
    gap = spread(reported, "mae")
    return {
        "mae_gap": gap,
        "relative_mae_gap": gap / overall_mae,
        "bias_gap": spread(reported, "bias"),
        "groups_compared": reported["group"].to_list(),
        "groups_excluded": slices.filter(~pl.col("reported"))["group"].to_list(),
    }
