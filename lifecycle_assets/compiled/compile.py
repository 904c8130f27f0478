"""Read a fitted pipeline built by `ml.training.build_pipeline` into a `CompiledModel`.

Numeric steps (imputation, missing indicators, scaling) are copied from the fitted attributes.
Categorical encodings are never re-derived from scikit-learn's rules (infrequent levels,
unknown handling, HistGradientBoosting's second ordinal encoding that moves categorical columns
first): each feature's levels are pushed through the fitted transformers themselves and the
output recorded, so the table is what the pipeline does by construction. Anything outside the
shapes `build_pipeline` makes raises `Unsupported`, and scikit-learn keeps serving.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from lifecycle_assets.compiled.model import MISSING_CODE, CategoricalInput, CompiledModel
from lifecycle_assets.ml.features import UNKNOWN_CATEGORY
from lifecycle_assets.spec import ModelSpec

# A string no level can equal, pushed through the encoders to learn what "unknown" becomes.
_PROBE_UNKNOWN = "\x00compiled-probe-unknown\x00"
_LINKS = {"IdentityLink": "identity", "LogLink": "log", "LogitLink": "logit"}


class Unsupported(ValueError):
    """The pipeline has a shape the compiler does not handle; scikit-learn serves it."""


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


def _native_encoding(pipeline: Pipeline, spec: ModelSpec) -> tuple[dict[str, Any], dict, list]:
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


def _onehot_encoding(pipeline: Pipeline, spec: ModelSpec) -> tuple[dict[str, Any], dict, list]:
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


def _bit(bitset: np.ndarray, value: int) -> bool:
    return bool((int(bitset[value // 32]) >> (value % 32)) & 1)


def _hgb_trees(model: Any, n_inputs: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """HistGradientBoosting's predictors as flat arrays, every split as a 257-entry table.

    A numeric split at threshold t becomes "right when the value's bin (how many of the
    column's thresholds lie below it) exceeds t's rank"; a categorical split uses the model's
    raw left-category bitset, then its known-category bitset (unknown categories go the
    missing way, as in scikit-learn's predictor); entry 256 is a missing value.
    """
    if model.n_trees_per_iteration_ != 1:
        raise Unsupported("more than one tree per iteration (multiclass)")
    link = _LINKS.get(type(model._loss.link).__name__)
    if link is None:
        raise Unsupported(f"loss link {type(model._loss.link).__name__}")
    is_code = model._bin_mapper.is_categorical_
    is_code = np.zeros(n_inputs, dtype=bool) if is_code is None else np.asarray(is_code, bool)
    if is_code.size != n_inputs:
        raise Unsupported("the model's input width differs from the encoding's")
    known, f_idx_map = (None, None)
    if is_code.any():
        known, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
    predictors = [iteration[0] for iteration in model._predictors]
    all_nodes = [p.nodes for p in predictors]
    # Each numeric column's distinct split thresholds, in order: a value's bin is its rank.
    edges = []
    for f in range(n_inputs):
        used = [
            nodes["num_threshold"][(nodes["feature_idx"] == f) & ~nodes["is_leaf"].astype(bool)]
            for nodes in all_nodes
        ]
        column = np.unique(np.concatenate(used)) if not is_code[f] else np.array([])
        if column.size >= MISSING_CODE:
            raise Unsupported(f"input {f} has {column.size} distinct thresholds")
        edges.append(column.astype(np.float64))
    stride = MISSING_CODE + 1
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("feature", "children", "leaf", "value", "goes_right")
    }
    roots, offset, depth = [], 0, 0
    for predictor, nodes in zip(predictors, all_nodes, strict=True):
        n = nodes.shape[0]
        ids = np.arange(offset, offset + n, dtype=np.intp)
        leaf = nodes["is_leaf"].astype(bool)
        roots.append(offset)
        left = np.where(leaf, ids, nodes["left"].astype(np.intp) + offset)
        right = np.where(leaf, ids, nodes["right"].astype(np.intp) + offset)
        parts["children"].append(np.stack([left, right], axis=1).ravel())
        parts["feature"].append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp))
        parts["leaf"].append(leaf)
        parts["value"].append(nodes["value"].astype(np.float64))
        table = np.zeros((n, stride), dtype=np.uint8)
        for i in np.flatnonzero(~leaf):
            node = nodes[i]
            f = int(node["feature_idx"])
            missing_right = not bool(node["missing_go_to_left"])
            if node["is_categorical"]:
                raw = predictor.raw_left_cat_bitsets[node["bitset_idx"]]
                known_row = known[f_idx_map[f]]
                for code in range(MISSING_CODE):
                    if _bit(raw, code):
                        table[i, code] = 0
                    elif _bit(known_row, code):
                        table[i, code] = 1
                    else:  # unknown categories are treated as missing
                        table[i, code] = missing_right
            else:
                rank = int(np.searchsorted(edges[f], node["num_threshold"]))
                table[i, :MISSING_CODE] = np.arange(MISSING_CODE) > rank
            table[i, MISSING_CODE] = missing_right
        parts["goes_right"].append(table.ravel())
        depth = max(depth, int(nodes["depth"].max()))
        offset += n
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["roots"] = np.array(roots, dtype=np.intp)
    quick = _leaf_masks(all_nodes)
    if quick is not None:
        arrays.update(quick)
    arrays["is_code"] = is_code
    arrays["edges"] = np.concatenate(edges) if edges else np.array([])
    arrays["edge_offsets"] = np.cumsum([0] + [e.size for e in edges]).astype(np.intp)
    header = {
        "estimator": "trees",
        "binned": True,
        "masked": quick is not None,
        "aggregate": "sum",
        "baseline": float(np.asarray(model._baseline_prediction).ravel()[0]),
        "link": link,
        "float32": False,
        "max_depth": depth,
    }
    return arrays, header


def _leaf_masks(all_nodes: list[np.ndarray]) -> dict[str, np.ndarray] | None:
    """Per split, the leaves it rules out when it goes right (its left subtree), as a bit mask
    over its tree's leaves in left-to-right order; None when a tree has more than 64 leaves.

    The leaf a row reaches is the leftmost leaf no split ruled out (QuickScorer), so a row is
    scored by one table lookup per split and one AND per tree, with no walk down the levels.
    """
    splits, node_ids, masks, starts, leaf_values, leaf_starts = [], [], [], [], [], []
    offset = 0
    for nodes in all_nodes:
        order: list[int] = []  # leaves, left to right
        spans: dict[int, tuple[int, int]] = {}  # node -> [first, last) leaf positions

        def visit(i: int, nodes: np.ndarray = nodes, order: list[int] = order, spans=spans) -> None:
            first = len(order)
            if nodes["is_leaf"][i]:
                order.append(i)
            else:
                visit(int(nodes["left"][i]))
                visit(int(nodes["right"][i]))
            spans[i] = (first, len(order))

        visit(0)
        if len(order) > 64:
            return None
        starts.append(len(splits))
        leaf_starts.append(len(leaf_values))
        leaf_values.extend(float(nodes["value"][i]) for i in order)
        internal = [i for i in range(nodes.shape[0]) if not nodes["is_leaf"][i]] or [0]
        for i in internal:
            mask = (1 << 64) - 1
            if not nodes["is_leaf"][i]:
                first, last = spans[int(nodes["left"][i])]
                for position in range(first, last):
                    mask &= ~(1 << position)
            splits.append(int(nodes["feature_idx"][i]) if not nodes["is_leaf"][i] else 0)
            node_ids.append(offset + i)
            masks.append(mask)
        offset += nodes.shape[0]
    return {
        "mask_feature": np.array(splits, dtype=np.intp),
        "mask_node": np.array(node_ids, dtype=np.intp),
        "mask_bits": np.array(masks, dtype=np.uint64),
        "mask_starts": np.array(starts, dtype=np.intp),
        "mask_leaf_value": np.array(leaf_values, dtype=np.float64),
        "mask_leaf_start": np.array(leaf_starts, dtype=np.intp),
    }


def _forest_trees(model: Any, classifier: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A random forest's trees as flat arrays; each leaf holds its tree's positive-class
    probability (classifier) or value, and the forest averages them."""
    if model.n_outputs_ != 1:
        raise Unsupported("more than one output")
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("feature", "threshold", "left", "right", "missing_left", "leaf", "value")
    }
    roots, offset, depth = [], 0, 0
    for estimator in model.estimators_:
        tree = estimator.tree_
        n = tree.node_count
        ids = np.arange(offset, offset + n, dtype=np.intp)
        leaf = tree.children_left == -1
        roots.append(offset)
        parts["feature"].append(np.where(leaf, 0, tree.feature).astype(np.intp))
        parts["threshold"].append(tree.threshold.astype(np.float64))
        parts["left"].append(np.where(leaf, ids, tree.children_left + offset).astype(np.intp))
        parts["right"].append(np.where(leaf, ids, tree.children_right + offset).astype(np.intp))
        missing = getattr(tree, "missing_go_to_left", np.zeros(n, dtype=np.uint8))
        parts["missing_left"].append(np.asarray(missing).astype(bool))
        parts["leaf"].append(leaf)
        value = tree.value[:, 0, :]
        if classifier:
            normalizer = value.sum(axis=1)
            normalizer[normalizer == 0.0] = 1.0
            parts["value"].append(value[:, 1] / normalizer)
        else:
            parts["value"].append(value[:, 0].astype(np.float64))
        depth = max(depth, int(tree.max_depth))
        offset += n
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["roots"] = np.array(roots, dtype=np.intp)
    header = {
        "estimator": "trees",
        "binned": False,
        "aggregate": "mean",
        "baseline": 0.0,
        "link": "identity",
        "float32": True,
        "max_depth": depth,
    }
    return arrays, header


def _linear(model: Any, classifier: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64).ravel()
    if (coef.ndim == 2 and coef.shape[0] != 1) or intercept.size > 1:
        raise Unsupported("more than one linear output")
    header = {
        "estimator": "linear",
        "intercept": float(intercept[0]) if intercept.size else 0.0,
        "link": "logit" if classifier else "identity",
    }
    return {"coef": coef.ravel()}, header


def compile_pipeline(pipeline: Pipeline, spec: ModelSpec) -> CompiledModel:
    """The pipeline as a `CompiledModel`; raises `Unsupported` for any other shape."""
    if not isinstance(pipeline, Pipeline) or list(pipeline.named_steps) != ["preprocess", "model"]:
        raise Unsupported("not a preprocess + model pipeline")
    model = pipeline.named_steps["model"]
    classifier = spec.is_classifier
    if classifier and list(getattr(model, "classes_", [])) != [0, 1]:
        raise Unsupported(f"classes {list(getattr(model, 'classes_', []))}, expected [0, 1]")
    if isinstance(model, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        numeric, header, categoricals = _native_encoding(pipeline, spec)
        estimator, estimator_header = _hgb_trees(model, int(header["n_inputs"]))
    elif isinstance(model, RandomForestClassifier | RandomForestRegressor):
        numeric, header, categoricals = _onehot_encoding(pipeline, spec)
        estimator, estimator_header = _forest_trees(model, classifier)
    elif isinstance(model, LogisticRegression | Ridge):
        numeric, header, categoricals = _onehot_encoding(pipeline, spec)
        estimator, estimator_header = _linear(model, classifier)
    else:
        raise Unsupported(f"estimator {type(model).__name__}")
    header = {
        **header,
        **estimator_header,
        "task": spec.task,
        "kind": type(model).__name__,
        "numeric_names": list(spec.numeric_features),
    }
    return CompiledModel(header=header, arrays={**numeric, **estimator}, categoricals=categoricals)
