"""The compiled model: arrays, a vectorized numpy evaluator, and its npz file format.

Inputs are the model's feature values as the feature code produces them: a float matrix of the
numeric features (NaN where missing) and, per categorical feature, its levels as strings (None
where missing). The encoding (imputation, indicators, scaling, one-hot or ordinal codes,
HistGradientBoosting's own categorical re-encoding and column order) is a handful of lookup
tables and affine maps; the estimator is either a linear function or a forest of trees walked
for every (row, tree) pair at once, one numpy step per tree level.

The file is an `.npz` written and read with `allow_pickle=False`: numbers and one JSON header,
nothing that can run code when loaded.
"""

from __future__ import annotations

import bisect
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
# Column of a categorical split's table taken by a missing (NaN or negative) code.
MISSING_CODE = 256
_ALL_LEAVES = np.uint64(0xFFFFFFFFFFFFFFFF)
# Rows scored per step of the leaf-mask evaluator (bounds its rows x splits temporaries).
_CHUNK = 256


@dataclass
class CategoricalInput:
    """One categorical feature: its known levels and the encoded block each one maps to.

    `table` has one row per level, then a row for a missing value and one for any other
    (unknown) string; `columns` are the block's positions in the estimator's input.
    """

    name: str
    levels: list[str]
    table: np.ndarray
    columns: np.ndarray
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {level: row for row, level in enumerate(self.levels)}

    @property
    def missing_row(self) -> int:
        return len(self.levels)

    @property
    def unknown_row(self) -> int:
        return len(self.levels) + 1

    def rows(self, values: Sequence[str | None]) -> np.ndarray:
        """Table rows for values compared exactly as written (no case or space folding)."""
        index, missing, unknown = self.index, self.missing_row, self.unknown_row
        return np.fromiter(
            (missing if v is None else index.get(v, unknown) for v in values),
            dtype=np.intp,
            count=len(values),
        )


@dataclass
class CompiledModel:
    """A fitted pipeline as arrays; `score` returns what `predict_scores` returns."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray]
    categoricals: list[CategoricalInput]
    _edge_lists: list[list[float] | None] | None = field(default=None, init=False, repr=False)

    # ---- evaluation -------------------------------------------------------------------
    @property
    def numeric_names(self) -> list[str]:
        return list(self.header["numeric_names"])

    @property
    def categorical_names(self) -> list[str]:
        return [c.name for c in self.categoricals]

    def encode(
        self, numeric: np.ndarray, categorical: Sequence[Sequence[str | None]]
    ) -> np.ndarray:
        """The estimator's input matrix for `numeric` (rows x numeric features) and the
        categorical values (one sequence per categorical feature)."""
        a, h = self.arrays, self.header
        n = numeric.shape[0]
        out = np.empty((n, int(h["n_inputs"])), dtype=np.float64)
        values = numeric[:, a["num_src"]]
        if h["impute"]:
            values = np.where(np.isnan(values), a["fill"], values)
        if a["ind_src"].size:
            indicators = np.isnan(numeric[:, a["ind_src"]]).astype(np.float64)
            values = np.concatenate([values, indicators], axis=1)
        if h["scale"]:
            values = (values - a["center"]) / a["scale"]
        out[:, a["num_dst"]] = values
        for column, values_k in zip(self.categoricals, categorical, strict=True):
            out[:, column.columns] = column.table[column.rows(values_k)]
        return out

    def raw(self, inputs: np.ndarray) -> np.ndarray:
        """The estimator's raw output per row (before the link)."""
        if self.header["estimator"] == "linear":
            return inputs @ self.arrays["coef"] + float(self.header["intercept"])
        return self._trees(inputs)

    def score(self, numeric: np.ndarray, categorical: Sequence[Sequence[str | None]]) -> np.ndarray:
        """Positive-class probability (classifier) or predicted value (regressor) per row."""
        raw = self.raw(self.encode(numeric, categorical))
        link = self.header["link"]
        if link == "logit":
            with np.errstate(over="ignore"):  # exp(-raw) -> inf gives 0.0, as expit does
                return 1.0 / (1.0 + np.exp(-raw))
        if link == "log":
            return np.exp(raw)
        return raw

    def _trees(self, inputs: np.ndarray) -> np.ndarray:
        a, h = self.arrays, self.header
        if h["float32"]:
            # scikit-learn's trees compare float32 inputs against float64 thresholds.
            inputs = inputs.astype(np.float32).astype(np.float64)
        n = inputs.shape[0]
        roots = a["roots"]
        n_trees = roots.size
        if h.get("masked"):
            leaves = (
                np.concatenate([self._masked(inputs[i : i + _CHUNK]) for i in range(0, n, _CHUNK)])
                if n > _CHUNK
                else self._masked(inputs)
            )
        else:
            node = np.tile(roots, n)
            if h["binned"]:
                node = self._walk_binned(inputs, node, n_trees)
            else:
                node = self._walk(inputs, node, n_trees)
            leaves = a["value"][node].reshape(n, n_trees)
        # Summed tree by tree, in scikit-learn's order, so rounding matches it too.
        first = np.full((n, 1), float(h["baseline"]))
        total = np.cumsum(np.concatenate([first, leaves], axis=1), axis=1)[:, -1]
        return total / n_trees if h["aggregate"] == "mean" else total

    def _masked(self, inputs: np.ndarray) -> np.ndarray:
        """Leaf values (rows x trees) by leaf masks: every split decided at once, then per tree
        the leftmost leaf that no split ruled out."""
        a = self.arrays
        bins = self.bins(inputs)[:, a["mask_feature"]]
        right = a["goes_right"][a["mask_node"] * (MISSING_CODE + 1) + bins].astype(bool)
        ruled = np.where(right, a["mask_bits"], _ALL_LEAVES)
        alive = np.bitwise_and.reduceat(ruled, a["mask_starts"], axis=1)
        lowest = alive & (~alive + np.uint64(1))
        position = np.log2(lowest.astype(np.float64)).astype(np.intp)
        return a["mask_leaf_value"][a["mask_leaf_start"] + position]

    def _walk(self, inputs: np.ndarray, node: np.ndarray, n_trees: int) -> np.ndarray:
        """Every (row, tree) pair one level down per step, comparing raw values."""
        a = self.arrays
        n, width = inputs.shape
        flat = inputs.ravel()
        base = np.repeat(np.arange(n, dtype=np.intp) * width, n_trees)
        feature, threshold, left_of, right_of = a["feature"], a["threshold"], a["left"], a["right"]
        missing_left, leaf = a["missing_left"], a["leaf"]
        for _ in range(int(self.header["max_depth"])):
            if leaf[node].all():
                break
            value = flat[base + feature[node]]
            goes_left = (value <= threshold[node]) | (np.isnan(value) & missing_left[node])
            node = np.where(goes_left, left_of[node], right_of[node])
        return node

    def bins(self, inputs: np.ndarray) -> np.ndarray:
        """Each input as its bin: the number of the column's split thresholds below it (a
        categorical code as itself), 256 when missing."""
        a = self.arrays
        edges, offsets, is_code = a["edges"], a["edge_offsets"], a["is_code"]
        n, width = inputs.shape
        if n == 1:
            return np.array([self._bins_one(inputs[0].tolist())], dtype=np.intp)
        out = np.empty((n, width), dtype=np.intp)
        missing = np.isnan(inputs)
        for f in range(width):
            column = inputs[:, f]
            if is_code[f]:
                # As HistGradientBoosting: NaN and negative codes are missing.
                absent = missing[:, f] | (column < 0)
                code = np.minimum(np.where(absent, 0, column), MISSING_CODE - 1)
                out[:, f] = np.where(absent, MISSING_CODE, code.astype(np.intp))
            else:
                out[:, f] = np.searchsorted(edges[offsets[f] : offsets[f + 1]], column)
                out[missing[:, f], f] = MISSING_CODE
        return out

    def _bins_one(self, row: list[float]) -> list[int]:
        """`bins` for a single row in plain Python: fifteen bisects beat fifteen numpy calls."""
        if self._edge_lists is None:
            a = self.arrays
            offsets = a["edge_offsets"].tolist()
            edges = a["edges"].tolist()
            self._edge_lists = [
                None if code else edges[offsets[f] : offsets[f + 1]]
                for f, code in enumerate(a["is_code"].tolist())
            ]
        out = []
        for value, edges in zip(row, self._edge_lists, strict=True):
            if value != value:
                out.append(MISSING_CODE)
            elif edges is None:
                out.append(MISSING_CODE if value < 0 else min(int(value), MISSING_CODE - 1))
            else:
                out.append(bisect.bisect_left(edges, value))
        return out

    def _walk_binned(self, inputs: np.ndarray, node: np.ndarray, n_trees: int) -> np.ndarray:
        """Every (row, tree) pair one level down per step; each node's decision is one lookup
        in its 257-entry table (bins, then missing), numeric and categorical splits alike."""
        a = self.arrays
        n, width = inputs.shape
        flat = self.bins(inputs).ravel()
        base = np.repeat(np.arange(n, dtype=np.intp) * width, n_trees)
        feature, goes_right, children, leaf = (
            a["feature"],
            a["goes_right"],
            a["children"],
            a["leaf"],
        )
        stride = MISSING_CODE + 1
        for _ in range(int(self.header["max_depth"])):
            if leaf[node].all():
                break
            right = goes_right[node * stride + flat[base + feature[node]]]
            node = children[2 * node + right]
        return node

    # ---- file format -------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        header = {
            **self.header,
            "format_version": FORMAT_VERSION,
            "categoricals": [{"name": c.name, "levels": c.levels} for c in self.categoricals],
        }
        payload = {f"a.{k}": v for k, v in self.arrays.items()}
        for k, column in enumerate(self.categoricals):
            payload[f"c{k}.table"] = column.table
            payload[f"c{k}.columns"] = column.columns
        payload["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **payload)
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        return path

    @classmethod
    def from_bytes(cls, data: bytes) -> CompiledModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode())
            if header.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"compiled format {header.get('format_version')} not supported")
            arrays = {k[2:]: npz[k] for k in npz.files if k.startswith("a.")}
            categoricals = [
                CategoricalInput(
                    name=c["name"],
                    levels=list(c["levels"]),
                    table=npz[f"c{k}.table"],
                    columns=npz[f"c{k}.columns"],
                )
                for k, c in enumerate(header.pop("categoricals"))
            ]
        for name in ("missing_left", "leaf"):
            if name in arrays:
                arrays[name] = arrays[name].astype(bool)
        return cls(header=header, arrays=arrays, categoricals=categoricals)

    @classmethod
    def load(cls, path: str | Path) -> CompiledModel:
        return cls.from_bytes(Path(path).read_bytes())
