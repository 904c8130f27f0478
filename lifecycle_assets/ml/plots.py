"""Evaluation plots rendered to PNG bytes, ready to log to MLflow or attach to Dagster metadata.

The Agg backend is selected before pyplot is imported so that plotting works in headless runs
(Dagster workers, CI). Every figure is closed in a `finally`, so long runs do not leak memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score, roc_curve

from lifecycle_assets.ml.regression_metrics import regression_calibration_table

FIGSIZE = (5, 4)
DPI = 100


@contextmanager
def png_figure(size: tuple[float, float] = FIGSIZE) -> Iterator[tuple[Any, io.BytesIO]]:
    """One axes to draw on; the PNG lands in the buffer and the figure is always closed."""
    fig, ax = plt.subplots(figsize=size, dpi=DPI)
    buffer = io.BytesIO()
    try:
        yield ax, buffer
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(fig)


def _rows(table: pl.DataFrame | Sequence[dict[str, Any]]) -> pl.DataFrame:
    return table if isinstance(table, pl.DataFrame) else pl.DataFrame(list(table))


def roc_curve_png(
    y_true: np.ndarray,
    proba: np.ndarray,
    champion_proba: np.ndarray | None = None,
    labels: tuple[str, str] = ("challenger", "champion"),
) -> bytes:
    """ROC curve of the challenger, overlaid with the champion's on the same rows if given."""
    curves = [(labels[0], proba)]
    if champion_proba is not None:
        curves.append((labels[1], champion_proba))
    with png_figure() as (ax, buffer):
        for label, scores in curves:
            fpr, tpr, _ = roc_curve(y_true, scores)
            auc = roc_auc_score(y_true, scores)
            ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
        ax.legend(loc="lower right")
    return buffer.getvalue()


def calibration_png(calibration_table: pl.DataFrame | Sequence[dict[str, Any]]) -> bytes:
    """Reliability diagram: mean predicted probability against observed rate per bin."""
    table = _rows(calibration_table)
    with png_figure() as (ax, buffer):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
        if table.height:
            ax.plot(
                table["mean_predicted"].to_list(),
                table["observed_rate"].to_list(),
                marker="o",
                label="model",
            )
        ax.set(
            xlabel="Mean predicted probability",
            ylabel="Observed positive rate",
            title="Calibration",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.legend(loc="upper left")
    return buffer.getvalue()


def confusion_matrix_png(confusion: dict[str, int]) -> bytes:
    """2x2 confusion matrix with counts written in each cell."""
    matrix = np.array(
        [[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]], dtype=int
    )
    with png_figure() as (ax, buffer):
        image = ax.imshow(matrix, cmap="Blues")
        ax.figure.colorbar(image, ax=ax)
        midpoint = matrix.max() / 2 if matrix.max() else 0.5
        for (row, col), value in np.ndenumerate(matrix):
            color = "white" if value > midpoint else "black"
            ax.text(col, row, str(value), ha="center", va="center", color=color)
        ax.set_xticks([0, 1], labels=["predicted 0", "predicted 1"])
        ax.set_yticks([0, 1], labels=["actual 0", "actual 1"])
        ax.set_title("Confusion matrix")
    return buffer.getvalue()


def slice_metrics_png(slices: pl.DataFrame | Sequence[dict[str, Any]]) -> bytes:
    """Grouped bars of TPR and predicted positive rate for each slice of the sensitive attribute."""
    table = _rows(slices)
    groups = [str(g) for g in table["group"].to_list()] if table.height else []
    # A slice with no positives has no TPR; plot it as 0 height but it is marked in the label.
    tpr = [np.nan if v is None else v for v in (table["tpr"].to_list() if groups else [])]
    ppr = table["predicted_positive_rate"].to_list() if groups else []
    x = np.arange(len(groups))
    width = 0.4
    with png_figure() as (ax, buffer):
        ax.bar(x - width / 2, np.nan_to_num(tpr), width, label="TPR")
        ax.bar(x + width / 2, ppr, width, label="predicted positive rate")
        tick_labels = [
            g if not np.isnan(t) else f"{g} (no TPR)" for g, t in zip(groups, tpr, strict=True)
        ]
        ax.set_xticks(x, labels=tick_labels, rotation=30, ha="right")
        ax.set(ylabel="rate", ylim=(0, 1), title="Metrics by slice")
        ax.legend(loc="upper right")
    return buffer.getvalue()


def predicted_vs_actual_png(
    y_true: np.ndarray, predicted: np.ndarray, champion_predicted: np.ndarray | None = None
) -> bytes:
    """Regressors: binned mean actual against mean predicted (the champion's overlaid if given),
    on the diagonal when the model is right on average across its range."""
    curves = [("challenger", predicted)]
    if champion_predicted is not None:
        curves.append(("champion", champion_predicted))
    with png_figure() as (ax, buffer):
        high = float(max(np.max(y_true), *(np.max(p) for _, p in curves)))
        ax.plot([0, high], [0, high], linestyle="--", color="grey", linewidth=1, label="perfect")
        for label, values in curves:
            table = regression_calibration_table(y_true, values, bins=20)
            ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=label)
        ax.set(xlabel="Mean predicted", ylabel="Mean actual", title="Predicted vs actual")
        ax.legend(loc="upper left")
    return buffer.getvalue()


def residuals_png(y_true: np.ndarray, predicted: np.ndarray) -> bytes:
    """Regressors: the distribution of residuals (actual minus predicted)."""
    residuals = np.asarray(y_true, dtype=float) - np.asarray(predicted, dtype=float)
    with png_figure() as (ax, buffer):
        ax.hist(residuals, bins=50, color="tab:blue", alpha=0.8)
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set(xlabel="actual - predicted", ylabel="rows", title="Residuals")
    return buffer.getvalue()


def regression_slices_png(slices: pl.DataFrame | Sequence[dict[str, Any]]) -> bytes:
    """Regressors: MAE and bias of each slice of the sensitive attribute."""
    table = _rows(slices)
    groups = [str(g) for g in table["group"].to_list()] if table.height else []
    x = np.arange(len(groups))
    width = 0.4
    with png_figure() as (ax, buffer):
        ax.bar(x - width / 2, table["mae"].to_list() if groups else [], width, label="MAE")
        ax.bar(x + width / 2, table["bias"].to_list() if groups else [], width, label="bias")
        ax.axhline(0, color="grey", linewidth=1)
        ax.set_xticks(x, labels=groups, rotation=30, ha="right")
        ax.set(ylabel="target units", title="Errors by slice")
        ax.legend(loc="upper right")
    return buffer.getvalue()


def evaluation_pngs(
    report: Any, y_true: np.ndarray, scores: np.ndarray, champion_scores: np.ndarray | None
) -> dict[str, bytes]:
    """The evaluation plots of a report's task, by file stem."""
    if report.task == "regression":
        return {
            "predicted_vs_actual": predicted_vs_actual_png(y_true, scores, champion_scores),
            "residuals": residuals_png(y_true, scores),
            "slices": regression_slices_png(report.slices),
        }
    return {
        "roc_curve": roc_curve_png(y_true, scores, champion_scores),
        "calibration": calibration_png(report.calibration),
        "confusion_matrix": confusion_matrix_png(report.confusion),
        "slices": slice_metrics_png(report.slices),
    }
