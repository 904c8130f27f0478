"""Warnings about features that make a model look better or worse than it is.

A feature that alone separates the classes almost perfectly is usually known only after the
outcome (target leakage); a categorical column whose values are mostly outside the spec's levels
has been zeroed into `__unknown__` (a spelling mismatch between spec and data).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from lifecycle_assets.ml.features import UNKNOWN_CATEGORY
from lifecycle_assets.spec import ModelSpec

LEAKAGE_CHECK = "no_single_feature_leaks"
LEAKAGE_AUC = 0.95
# A categorical feature with more than this share of known-value rows in `__unknown__` fails.
MAX_UNKNOWN_SHARE = 0.5


def single_feature_aucs(train: pl.DataFrame, spec: ModelSpec) -> dict[str, float]:
    """Each feature's ROC AUC as the only input, direction-free (max(auc, 1 - auc)): numbers as
    scores, categories by their positive rate in the same rows; missing values as their own
    group."""
    from sklearn.metrics import roc_auc_score

    y = train[spec.target].to_numpy()
    if len(np.unique(y)) < 2:
        return {}
    scores: dict[str, float] = {}
    for name in spec.feature_names:
        column = train[name]
        if column.dtype.is_numeric():
            values = column.cast(pl.Float64).to_numpy()
            floor = np.nanmin(values) - 1 if np.isfinite(values).any() else 0.0
            filled = np.where(np.isnan(values), floor, values)
        else:
            rates = (
                pl.DataFrame({"level": column.fill_null("__missing__"), "y": y})
                .group_by("level")
                .agg(pl.col("y").mean().alias("rate"))
            )
            mapping = dict(zip(rates["level"].to_list(), rates["rate"].to_list(), strict=True))
            filled = np.array([mapping[v] for v in column.fill_null("__missing__").to_list()])
        auc = float(roc_auc_score(y, filled))
        scores[name] = round(max(auc, 1.0 - auc), 4)
    return scores


def unknown_level_problems(features: pl.DataFrame, spec: ModelSpec) -> list[str]:
    """Categorical features whose non-missing values are mostly `__unknown__`."""
    problems = []
    for name in spec.categorical_features:
        levels = spec.feature(name).categories
        if not levels or name not in features.columns:
            continue
        known = features[name].drop_nulls()
        if known.len() == 0:
            continue
        share = float((known == UNKNOWN_CATEGORY).mean())
        if share > MAX_UNKNOWN_SHARE:
            problems.append(
                f"{name}: {share:.0%} of values are not among the spec's levels {list(levels)} "
                "(levels are compared exactly as written, case included)"
            )
    return problems
