"""The reference profile: a few kilobytes that stand in for the training data in drift checks.

Training summarizes each numeric feature (and the prediction score) as quantile bin edges with
the reference count in each bin, and each categorical feature as level counts. Drift on a window
is then computed against this summary alone, so its cost grows with the window and not with the
training set, and the profile can be stored next to the model version it describes.

Numeric bins are right-closed: bin 0 is (-inf, e0], bin i is (e[i-1], e[i]], the last bin is
(e[-1], +inf). The edges are observed values (nearest-rank quantiles, deduplicated), so a
discrete feature gets one bin per value and its binned CDF is exact. Each bin also keeps the sum
of its values: with it the integral of the CDF over a bin is exact, which is what the
Wasserstein distance integrates (see `drift.py`).

Version 2 added the per-bin sums; a version-1 profile (logged with an earlier model version)
still reads, with `sums` None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

SCORE_NAME = "__score__"
PROFILE_VERSION = 2
READABLE_VERSIONS = (1, 2)


class _Counted:
    """A profiled column's share of missing values, from its `count` and `missing` fields."""

    count: int  # non-missing values
    missing: int

    @property
    def missing_rate(self) -> float:
        total = self.count + self.missing
        return self.missing / total if total else 0.0


@dataclass(frozen=True)
class NumericProfile(_Counted):
    """Binned distribution of one numeric column in the reference data."""

    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]  # len(edges) + 1 bins, see the module docstring
    count: int  # non-missing values
    missing: int
    mean: float
    std: float
    sums: tuple[float, ...] | None = None  # per bin, as `counts`; None in version-1 profiles


@dataclass(frozen=True)
class CategoricalProfile(_Counted):
    """Level counts of one categorical column in the reference data."""

    name: str
    levels: tuple[str, ...]
    counts: tuple[int, ...]
    count: int
    missing: int


@dataclass(frozen=True)
class ReferenceProfile:
    """Everything drift needs to know about the reference data, JSON-serializable."""

    rows: int
    bins: int
    numeric: tuple[NumericProfile, ...]
    categorical: tuple[CategoricalProfile, ...]
    score: NumericProfile | None = None
    version: int = PROFILE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        if data.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"unsupported reference profile version {data.get('version')!r}")

        def numeric(item: dict[str, Any]) -> NumericProfile:
            sums = item.get("sums")
            return NumericProfile(
                **{
                    **item,
                    "edges": tuple(item["edges"]),
                    "counts": tuple(item["counts"]),
                    "sums": None if sums is None else tuple(sums),
                }
            )

        def categorical(item: dict[str, Any]) -> CategoricalProfile:
            return CategoricalProfile(
                **{**item, "levels": tuple(item["levels"]), "counts": tuple(item["counts"])}
            )

        return cls(
            rows=data["rows"],
            bins=data["bins"],
            numeric=tuple(numeric(item) for item in data["numeric"]),
            categorical=tuple(categorical(item) for item in data["categorical"]),
            score=None if data.get("score") is None else numeric(data["score"]),
            version=data["version"],
        )

    @property
    def feature_names(self) -> list[str]:
        return [p.name for p in self.numeric] + [p.name for p in self.categorical]


def numeric_expr(name: str) -> pl.Expr:
    """A numeric column as Float64 with NaN treated as missing, as the feature code does."""
    return pl.col(name).cast(pl.Float64).fill_nan(None)


def bin_index_expr(name: str, edges: tuple[float, ...]) -> pl.Expr:
    """Bin of each non-missing value of `name` against `edges` (right-closed bins)."""
    values = numeric_expr(name).drop_nulls()
    return pl.lit(pl.Series(edges, dtype=pl.Float64)).search_sorted(values, side="left")


@dataclass(frozen=True)
class BinTotals:
    """How many values of a column fall in each bin of its edges, and their sum per bin."""

    counts: np.ndarray  # int64, len(edges) + 1
    sums: np.ndarray  # float64, same length


def _bin_totals_query(frame: pl.LazyFrame, name: str, edges: tuple[float, ...]) -> pl.LazyFrame:
    binned = frame.select(
        bin_index_expr(name, edges).alias("bin"), numeric_expr(name).drop_nulls().alias("value")
    )
    return binned.group_by("bin").agg(pl.len().alias("n"), pl.col("value").sum().alias("sum"))


def _dense(totals: pl.DataFrame, size: int) -> BinTotals:
    counts, sums = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.float64)
    bins = totals["bin"].to_numpy()
    counts[bins] = totals["n"].to_numpy()
    sums[bins] = totals["sum"].to_numpy()
    return BinTotals(counts, sums)


def bin_totals(
    frame: pl.LazyFrame | pl.DataFrame, columns: dict[str, tuple[float, ...]]
) -> dict[str, BinTotals]:
    """Per column, its count and sum in each bin of its edges: one grouping per column, all
    collected together (polars runs them in parallel and reads each column once)."""
    lazy = frame.lazy()
    queries = [_bin_totals_query(lazy, name, edges) for name, edges in columns.items()]
    collected = pl.collect_all(queries) if queries else []
    return {
        name: _dense(totals, len(edges) + 1)
        for (name, edges), totals in zip(columns.items(), collected, strict=True)
    }


def _window_numeric_exprs(profile: NumericProfile) -> list[pl.Expr]:
    name, column = profile.name, numeric_expr(profile.name)
    exprs = [column.null_count().alias(f"{name}.missing")]
    if profile.edges:
        low, high = profile.edges[0], profile.edges[-1]
        exprs.append((low - column).clip(lower_bound=0).sum().alias(f"{name}.low"))
        exprs.append((column - high).clip(lower_bound=0).sum().alias(f"{name}.high"))
    return exprs


def _window_categorical_exprs(profile: CategoricalProfile) -> list[pl.Expr]:
    column = pl.col(profile.name).cast(pl.String)
    levels = column.drop_nulls().value_counts(name="n").implode()
    return [levels, column.null_count().alias(f"{profile.name}.missing")]


@dataclass(frozen=True)
class WindowSummary:
    """Everything drift needs from a window: `row` holds the row count (`__rows__`), each
    column's missing count (`<name>.missing`), each categorical column's level counts and how
    far numeric values fall below and above the edges (`<name>.low`, `<name>.high`); `bins` the
    numeric columns' counts and sums on the profile's bins."""

    row: pl.DataFrame
    bins: dict[str, BinTotals]


def summarize_window(
    frame: pl.LazyFrame,
    numeric: tuple[NumericProfile, ...],
    categorical: tuple[CategoricalProfile, ...] = (),
) -> WindowSummary:
    """Summarize a window against the profile; its cost grows with the window only."""
    exprs = [pl.len().alias("__rows__")]
    exprs += [expr for p in numeric for expr in _window_numeric_exprs(p)]
    exprs += [expr for p in categorical for expr in _window_categorical_exprs(p)]
    return WindowSummary(
        row=frame.select(exprs).collect(),
        bins=bin_totals(frame, {p.name: p.edges for p in numeric}),
    )


def _quantile_positions(name: str, bins: int) -> pl.Expr:
    values = numeric_expr(name).drop_nulls()
    positions = (pl.int_range(0, bins + 1) * (values.len() - 1) / bins).round().cast(pl.UInt32)
    return values.sort().gather(positions).implode().alias(name)


def _numeric_profiles(frame: pl.DataFrame, names: list[str], bins: int) -> list[NumericProfile]:
    if not names:
        return []
    stats = frame.select(
        expr
        for name in names
        for expr in (
            numeric_expr(name).count().alias(f"{name}.count"),
            numeric_expr(name).null_count().alias(f"{name}.missing"),
            numeric_expr(name).mean().alias(f"{name}.mean"),
            numeric_expr(name).std().alias(f"{name}.std"),
        )
    ).row(0, named=True)
    # An all-missing column has no quantiles (gathering from it would fail): one open bin.
    present = [name for name in names if stats[f"{name}.count"]]
    quantiles = frame.select(_quantile_positions(name, bins) for name in present)
    edges: dict[str, tuple[float, ...]] = {name: () for name in names}
    for name in present:
        edges[name] = tuple(float(v) for v in np.unique(quantiles[name][0].to_numpy()))
    totals = bin_totals(frame, edges)
    return [
        NumericProfile(
            name=name,
            edges=edges[name],
            counts=tuple(int(c) for c in totals[name].counts),
            count=int(stats[f"{name}.count"]),
            missing=int(stats[f"{name}.missing"]),
            mean=float(stats[f"{name}.mean"] or 0.0),
            std=float(stats[f"{name}.std"] or 0.0),
            sums=tuple(float(v) for v in totals[name].sums),
        )
        for name in names
    ]


def _categorical_profiles(frame: pl.DataFrame, names: list[str]) -> list[CategoricalProfile]:
    profiles = []
    for name in names:
        column = frame.get_column(name).cast(pl.String)
        counts = column.drop_nulls().value_counts(sort=True, name="n")
        profiles.append(
            CategoricalProfile(
                name=name,
                levels=tuple(counts[name].to_list()),
                counts=tuple(int(n) for n in counts["n"]),
                count=int(counts["n"].sum()),
                missing=column.null_count(),
            )
        )
    return profiles


def build_profile(
    features: pl.DataFrame,
    scores: np.ndarray | None,
    numeric: list[str],
    categorical: list[str],
    *,
    bins: int = 100,
) -> ReferenceProfile:
    """Summarize the reference features (and the model's scores on them) for later drift checks.

    `bins` quantile bins per numeric column keep the binned CDF within 1/bins of the true one,
    which bounds the error of the KS statistic computed from the profile.
    """
    if bins < 2:
        raise ValueError("a profile needs at least 2 bins")
    score = None
    if scores is not None:
        frame = pl.DataFrame({SCORE_NAME: np.asarray(scores, dtype=np.float64).ravel()})
        score = _numeric_profiles(frame, [SCORE_NAME], bins)[0]
    return ReferenceProfile(
        rows=features.height,
        bins=bins,
        numeric=tuple(_numeric_profiles(features, numeric, bins)),
        categorical=tuple(_categorical_profiles(features, categorical)),
        score=score,
    )
