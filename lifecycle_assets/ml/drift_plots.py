"""Drift plots as PNG bytes for Dagster metadata and the HTML report.

Drawn with the evaluation plots' `png_figure`: headless (Agg) and every figure closed, so daily
reports do not leak memory.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from lifecycle_assets.ml.drift import DriftReport, mass_groups
from lifecycle_assets.ml.plots import png_figure
from lifecycle_assets.ml.profile import SCORE_NAME, ReferenceProfile, bin_totals

DRIFTED_COLOR = "#c0392b"
STABLE_COLOR = "#5d8aa8"


def psi_bars_png(report: DriftReport) -> bytes:
    """PSI per feature (and the score), drifted ones in red, the PSI threshold as a line."""
    rows = [*report.features, *([report.score] if report.score else [])]
    with png_figure((6, 0.3 * len(rows) + 1.2)) as (ax, buffer):
        names = [r.feature for r in rows]
        colors = [DRIFTED_COLOR if r.drifted else STABLE_COLOR for r in rows]
        # No bar where no PSI could be computed (no values in the window), rather than a 0.
        ax.barh(names, [np.nan if r.psi is None else r.psi for r in rows], color=colors)
        ax.invert_yaxis()
        if report.thresholds.psi is not None:
            ax.axvline(report.thresholds.psi, color="black", linestyle="--", linewidth=1)
        ax.set_xlabel("PSI against the reference profile (red: drifted by any criterion)")
    return buffer.getvalue()


def _folded(counts: np.ndarray) -> np.ndarray:
    """Counts of the finite bins, the open outer bins folded into their neighbours."""
    finite = counts[1:-1].astype(np.float64)
    finite[0] += counts[0]
    finite[-1] += counts[-1]
    return finite


def score_distribution_png(
    profile: ReferenceProfile, scores: np.ndarray, groups: int = 20
) -> bytes:
    """Density of the score in the reference (from the profile) and in the window."""
    if profile.score is None or len(profile.score.edges) < 2:
        raise ValueError("the profile holds no score distribution to compare with")
    edges = np.asarray(profile.score.edges)
    reference = np.asarray(profile.score.counts)
    frame = pl.DataFrame({SCORE_NAME: np.asarray(scores, dtype=np.float64).ravel()})
    current = bin_totals(frame, {SCORE_NAME: profile.score.edges})[SCORE_NAME].counts
    # Both curves on the same bounds: the fine bins merged into groups of equal reference mass.
    starts = np.flatnonzero(np.diff(mass_groups(_folded(reference), groups), prepend=-1))
    bounds = np.append(edges[starts], edges[-1])
    with png_figure((6, 3.5)) as (ax, buffer):
        for counts, label, color in (
            (reference, "reference", STABLE_COLOR),
            (current, "current", DRIFTED_COLOR),
        ):
            mass = np.add.reduceat(_folded(counts), starts)
            density = mass / max(mass.sum(), 1) / np.maximum(np.diff(bounds), 1e-12)
            ax.stairs(density, bounds, label=label, color=color, linewidth=1.5)
        ax.set_xlabel("score")
        ax.set_ylabel("density")
        ax.legend()
    return buffer.getvalue()
