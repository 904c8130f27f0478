"""The pipeline's preprocessing as arrays: numeric steps copied from the fitted attributes, each
categorical feature's levels pushed through the fitted encoders and the outputs recorded (see
`compile.py`). `native_encoding` is HistGradientBoosting's (ordinal codes, categorical columns
first), `onehot_encoding` the one-hot of the forests and linear models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from lifecycle_assets.compiled.model import CategoricalInput
from lifecycle_assets.compiled.unsupported import Unsupported
from lifecycle_assets.ml.features import UNKNOWN_CATEGORY
from lifecycle_assets.spec import ModelSpec

# A string no level can equal, pushed through the encoders to learn what "unknown" becomes.
_PROBE_UNKNOWN = "\x00compiled-probe-unknown\x00"


def _slice_positions(transformer: ColumnTransformer, name: str) -> np.ndarray:
    part = transformer.output_indices_[name]
    return np.arange(part.start, part.stop, dtype=np.intp)


def _check_remainder(transformer: ColumnTransformer, expected: set[str]) -> dict[str, Any]:
    fitted: dict[str, Any] = {}
    for name, step, columns in transformer.transformers_:
        if name == "remainder":
            if step != "drop" and len(columns):
                raise Unsupported("the column transformer passes remainder columns through")
            continue
        fitted[name] = (step, list(columns))
    if set(fitted) != expected:
        raise Unsupported(f"column transformer parts {sorted(fitted)}, expected {sorted(expected)}")
    return fitted


def _probe_frame(spec: ModelSpec, feature: str, values: list[str | None]) -> pd.DataFrame:
    """Rows that vary one categorical feature; every other input holds a fixed valid value."""
    n = len(values)
    columns: dict[str, Any] = {name: np.zeros(n) for name in spec.numeric_features}
    for name in spec.categorical_features:
        levels = spec.feature(name).categories
        columns[name] = [levels[0] if levels else "a"] * n
    columns[feature] = values
    frame = pd.DataFrame(columns)[spec.feature_names]
    for name in spec.categorical_features:
        frame[name] = frame[name].astype(object)
    return frame


def _probe_levels(fitted_levels: Any) -> list[str]:
    """Every string level the fitted encoder knows (missing markers are probed separately)."""
    levels: list[str] = []
    for level in list(fitted_levels):
        if isinstance(level, str) and level not in levels:
            levels.append(level)
    return levels


def _categorical_tables(
    spec: ModelSpec,
    transform: Any,
    fitted_levels: list[Any],
    blocks: dict[str, np.ndarray] | None,
    block_slice: np.ndarray | None,
) -> list[CategoricalInput]:
    """Each categorical feature's table, recorded by pushing its levels through `transform`.

    `blocks` gives each feature's output columns when known (ordinal codes); otherwise the
    columns of `block_slice` that move when the feature varies are its block (one-hot).
    """
    inputs = []
    for k, name in enumerate(spec.categorical_features):
        levels = _probe_levels(fitted_levels[k])
        for extra in (*(spec.feature(name).categories or ()), UNKNOWN_CATEGORY):
            if extra not in levels:
                levels.append(extra)
        probes: list[str | None] = [*levels, None, _PROBE_UNKNOWN]
        encoded = np.asarray(transform(_probe_frame(spec, name, probes)), dtype=np.float64)
        if blocks is not None:
            columns = blocks[name]
        else:
            assert block_slice is not None
            part = encoded[:, block_slice]
            # One-hot output holds only 0 and 1: a column that ever changes is this feature's.
            columns = block_slice[(part != part[:1]).any(axis=0)]
        inputs.append(
            CategoricalInput(
                name=name, levels=levels, table=encoded[:, columns].copy(), columns=columns
            )
        )
    if blocks is None and block_slice is not None:
        used = np.concatenate([c.columns for c in inputs]) if inputs else np.array([], int)
        if sorted(used.tolist()) != block_slice.tolist():
            raise Unsupported("one-hot blocks do not cover the categorical output exactly")
    return inputs


def native_encoding(pipeline: Pipeline, spec: ModelSpec) -> tuple[dict[str, Any], dict, list]:
    """Passthrough numbers and ordinal codes, then HistGradientBoosting's own re-encoding."""
    outer: ColumnTransformer = pipeline.named_steps["preprocess"]
    model = pipeline.named_steps["model"]
    fitted = _check_remainder(outer, {"numeric", "categorical"})
    numeric_step = fitted["numeric"][0]
    identity = isinstance(numeric_step, FunctionTransformer) and numeric_step.func is None
    if numeric_step != "passthrough" and not identity:
        raise Unsupported("numeric columns are transformed before gradient boosting")
    if fitted["numeric"][1] != spec.numeric_features:
        raise Unsupported("numeric columns differ from the spec")
    encoder, cat_columns = fitted.get("categorical", (None, []))
    if cat_columns != spec.categorical_features:
        raise Unsupported("categorical columns differ from the spec")
    # Source of each column of the outer output: ("num", i) or ("cat", k).
    outer_source: dict[int, tuple[str, int]] = {}
    for i, position in enumerate(_slice_positions(outer, "numeric")):
        outer_source[int(position)] = ("num", i)
    for k, position in enumerate(_slice_positions(outer, "categorical")):
        outer_source[int(position)] = ("cat", k)
    inner: ColumnTransformer | None = getattr(model, "_preprocessor", None)
    # Position in the estimator's input of each outer column.
    if inner is None:
        destination = {p: p for p in outer_source}
    else:
        destination = {}
        for name, _, columns in inner.transformers_:
            if name == "remainder":
                continue
            consumed = np.arange(len(outer_source))[np.asarray(columns)]
            for position, column in zip(_slice_positions(inner, name), consumed, strict=True):
                destination[int(column)] = int(position)
    num_src, num_dst = [], []
    blocks: dict[str, np.ndarray] = {}
    for position, (kind, index) in sorted(outer_source.items()):
        if kind == "num":
            num_src.append(index)
            num_dst.append(destination[position])
        else:
            blocks[spec.categorical_features[index]] = np.array([destination[position]])

    def transform(frame: pd.DataFrame) -> np.ndarray:
        encoded = outer.transform(frame)
        return inner.transform(encoded) if inner is not None else encoded

    fitted_levels = list(encoder.categories_) if encoder is not None else []
    categoricals = _categorical_tables(spec, transform, fitted_levels, blocks, None)
    numeric = {
        "num_src": np.array(num_src, dtype=np.intp),
        "num_dst": np.array(num_dst, dtype=np.intp),
        "fill": np.full(len(num_src), np.nan),
        "ind_src": np.array([], dtype=np.intp),
        "center": np.zeros(len(num_src)),
        "scale": np.ones(len(num_src)),
    }
    header = {"impute": False, "scale": False, "n_inputs": len(outer_source)}
    return numeric, header, categoricals


def onehot_encoding(pipeline: Pipeline, spec: ModelSpec) -> tuple[dict[str, Any], dict, list]:
    """Median imputation with missing indicators (and scaling), then imputed one-hot levels."""
    outer: ColumnTransformer = pipeline.named_steps["preprocess"]
    fitted = _check_remainder(outer, {"numeric", "categorical"})
    numeric_steps, numeric_columns = fitted["numeric"]
    if numeric_columns != spec.numeric_features:
        raise Unsupported("numeric columns differ from the spec")
    if fitted["categorical"][1] != spec.categorical_features:
        raise Unsupported("categorical columns differ from the spec")
    steps = dict(numeric_steps.steps) if isinstance(numeric_steps, Pipeline) else {}
    imputer = steps.get("impute")
    if not isinstance(imputer, SimpleImputer) or set(steps) - {"impute", "scale"}:
        raise Unsupported("numeric steps other than SimpleImputer (+ StandardScaler)")
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if not np.isfinite(fill).all():
        raise Unsupported("an imputer statistic is missing (an all-missing training column)")
    indicator = getattr(imputer, "indicator_", None)
    ind_src = (
        np.asarray(indicator.features_, dtype=np.intp)
        if imputer.add_indicator and indicator is not None
        else np.array([], dtype=np.intp)
    )
    width = fill.size + ind_src.size
    scaler = steps.get("scale")
    scaled = scaler is not None
    if scaled and not isinstance(scaler, StandardScaler):
        raise Unsupported("numeric scaling other than StandardScaler")
    center = (
        np.asarray(scaler.mean_, dtype=np.float64)
        if scaled and scaler.mean_ is not None and scaler.with_mean
        else np.zeros(width)
    )
    scale = (
        np.asarray(scaler.scale_, dtype=np.float64)
        if scaled and scaler.scale_ is not None
        else np.ones(width)
    )
    positions = _slice_positions(outer, "numeric")
    if positions.size != width or center.size != width or scale.size != width:
        raise Unsupported("numeric output width differs from imputer + indicators")
    encoder = fitted["categorical"][0]
    onehot = encoder.steps[-1][1] if isinstance(encoder, Pipeline) else encoder
    categoricals = _categorical_tables(
        spec,
        outer.transform,
        list(onehot.categories_),
        None,
        _slice_positions(outer, "categorical"),
    )
    numeric = {
        "num_src": np.arange(fill.size, dtype=np.intp),
        "num_dst": positions,
        "fill": fill,
        "ind_src": ind_src,
        "center": center,
        "scale": scale,
    }
    n_inputs = int(outer.output_indices_["categorical"].stop)
    n_inputs = max(n_inputs, int(outer.output_indices_["numeric"].stop))
    header = {"impute": True, "scale": scaled, "n_inputs": n_inputs}
    return numeric, header, categoricals
