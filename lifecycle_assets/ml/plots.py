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
