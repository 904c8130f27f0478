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
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from lifecycle_assets.compiled.encodings import native_encoding, onehot_encoding
from lifecycle_assets.compiled.model import MISSING_CODE, CompiledModel
from lifecycle_assets.compiled.unsupported import Unsupported
from lifecycle_assets.spec import ModelSpec

__all__ = ["Unsupported", "compile_pipeline"]

_LINKS = {"IdentityLink": "identity", "LogLink": "log", "LogitLink": "logit"}


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
        numeric, header, categoricals = native_encoding(pipeline, spec)
        estimator, estimator_header = _hgb_trees(model, int(header["n_inputs"]))
    elif isinstance(model, RandomForestClassifier | RandomForestRegressor):
        numeric, header, categoricals = onehot_encoding(pipeline, spec)
        estimator, estimator_header = _forest_trees(model, classifier)
    elif isinstance(model, LogisticRegression | Ridge):
        numeric, header, categoricals = onehot_encoding(pipeline, spec)
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
