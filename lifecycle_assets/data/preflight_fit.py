"""Whether the spec's split and gates fit the data: rows per split, positive rate, fairness
slices, each short one with the spec option that changes it (part of `preflight`)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from lifecycle_assets.data.preflight_report import PreflightReport
from lifecycle_assets.ml.training import SPLITS, time_split
from lifecycle_assets.spec import ModelSpec


def check_fit(
    spec: ModelSpec, frame: pl.DataFrame, rate: float | None, report: PreflightReport
) -> None:
    """Whether the default-or-configured split and gates fit this data, with the options."""
    end = spec.end_date or frame["__day__"].max()
    days = sorted(d for d in frame["__day__"].drop_nulls().unique().to_list() if d <= end)
    in_range = [d for d in days if d >= spec.start_date]
    days = in_range[-spec.training.window_days :]
    if spec.is_snapshot:
        _fit_snapshot(spec, frame, rate, report)
        return
    if len(days) < 3:
        report.add(
            "error",
            f"{len(days)} day(s) of data in the window: a time split needs 3 "
            "(check start_date, end_date and training.window_days)",
        )
        return
    try:
        split = time_split([dt.date.fromisoformat(str(d)) for d in days], spec)
    except ValueError as error:
        report.add(
            "error",
            f"{error}: lower training.test_fraction / training.validation_fraction (now "
            f"{spec.training.test_fraction} / {spec.training.validation_fraction}) or widen "
            "training.window_days",
        )
        return
    window = frame.filter(pl.col("__day__").is_in(days))
    if len(days) < len(in_range):
        # Else the rows per split below do not add up to the rows read, and nothing says why.
        read = frame.filter(pl.col("__day__").is_in(in_range)).height
        report.add(
            "info",
            f"training window: the last {len(days)} of {len(in_range)} day(s) with rows, "
            f"{days[0]} .. {days[-1]} ({window.height} of {read} rows; training.window_days="
            f"{spec.training.window_days}); earlier days are not trained on",
        )
    sizes = {s: window.filter(pl.col("__day__").is_in(split.days(s))).height for s in SPLITS}
    test = window.filter(pl.col("__day__").is_in(split.days("test")))
    _judge_fit(spec, window.height, sizes, test, rate, report)


def _fit_snapshot(
    spec: ModelSpec, frame: pl.DataFrame, rate: float | None, report: PreflightReport
) -> None:
    """A snapshot splits its rows at random in the spec's fractions."""
    report.add(
        "info",
        f"no timestamp: one snapshot filed under {spec.start_date}, split at random "
        f"(seed {spec.training.random_seed}, stratified by the target)",
    )
    n = frame.height
    test = round(n * spec.training.test_fraction)
    validation = round(n * spec.training.validation_fraction)
    sizes = {"train": n - test - validation, "validation": validation, "test": test}
    sample = frame.sample(n=test, seed=spec.training.random_seed) if test else frame.head(0)
    _judge_fit(spec, n, sizes, sample, rate, report)


def _judge_fit(
    spec: ModelSpec,
    total: int,
    sizes: dict[str, int],
    test: pl.DataFrame,
    rate: float | None,
    report: PreflightReport,
) -> None:
    gates = spec.gate_thresholds()
    report.add("info", "rows per split: " + ", ".join(f"{s} {n}" for s, n in sizes.items()))
    small = {s: n for s, n in sizes.items() if n < gates.min_rows_per_split}
    if small:
        report.add(
            "warning",
            f"splits {small} are under gates.min_rows_per_split={gates.min_rows_per_split}: "
            "lower it, or widen training.test_fraction / training.validation_fraction "
            f"(now {spec.training.test_fraction} / {spec.training.validation_fraction})",
        )
    if total < gates.min_training_rows:
        report.add(
            "warning",
            f"{total} rows in the window < gates.min_training_rows="
            f"{gates.min_training_rows}: lower it or widen training.window_days",
        )
    if rate is not None and not gates.min_positive_rate <= rate <= gates.max_positive_rate:
        option = "max_positive_rate" if rate > gates.max_positive_rate else "min_positive_rate"
        report.add(
            "warning",
            f"positive rate {rate:.4f} is outside [{gates.min_positive_rate}, "
            f"{gates.max_positive_rate}]: set gates.{option} to allow it",
        )
    sensitive = spec.sensitive_attribute
    if sensitive in test.columns:
        counts = test.group_by(pl.col(sensitive).cast(pl.String)).len().sort("len")
        tiny = [(g, n) for g, n in counts.rows() if n < gates.min_slice_size]
        if tiny:
            report.add(
                "warning",
                f"test slices of {sensitive!r} under gates.min_slice_size="
                f"{gates.min_slice_size}: {tiny} (reported as insufficient data; with fewer "
                "than 2 judged slices the fairness gate refuses; lower gates.min_slice_size)",
            )
