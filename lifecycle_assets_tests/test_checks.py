"""Checks called directly, as Dagster's testing guide does: verdicts carry actual and threshold."""

import dagster as dg

from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.ml import gates
from lifecycle_assets.ml.evaluation import evaluate


def _check(spec, name: str) -> dg.AssetChecksDefinition:
    for checks_def in build_definitions([spec]).asset_checks or []:
        if any(key.name == name for key in checks_def.check_keys):
            return checks_def
    raise KeyError(name)


def _report(good: bool) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2_000)
    groups = rng.choice(["a", "b"], 2_000)
    noise = rng.random(2_000)
    proba = np.clip(0.7 * y + 0.3 * noise, 0, 1) if good else noise
    return {"report": evaluate(y, proba, groups).to_dict()}


def test_auc_check_fails_a_useless_model_with_actual_and_threshold(spec, lifecycle_env) -> None:
    check = _check(spec, gates.AUC_GATE)
    failed = check(evaluation_report=_report(good=False))
    assert not failed.passed
    assert failed.metadata["threshold"].value == 0.70
    assert failed.metadata["actual"].value < 0.6
    passed = check(evaluation_report=_report(good=True))
    assert passed.passed


def test_training_data_check_explains_a_single_class_split(spec, lifecycle_env) -> None:
    check = _check(spec, gates.DATA_GATE)
    stats = {
        "train": {"rows": 5_000, "positives": 1_000},
        "validation": {"rows": 1_000, "positives": 200},
        "test": {"rows": 1_000, "positives": 0},
    }
    result = check(training_set={"split_stats": stats})
    assert not result.passed
    assert "test" in result.description


def test_parity_check_compares_pipeline_and_service_paths(spec) -> None:
    import datetime as dt

    import polars as pl

    from lifecycle_assets.data.simulator import simulate_day
    from lifecycle_assets.defs.checks import parity_mismatches
    from lifecycle_assets.ml.features import feature_table

    raw = simulate_day(dt.date(2026, 1, 9)).head(100)
    assert parity_mismatches(raw, feature_table(raw, spec), spec) == []
    skewed = feature_table(raw, spec).with_columns(pl.col("log_income") + 1e-9)
    assert parity_mismatches(raw, skewed, spec) == ["log_income"]


def test_leakage_check_reports_the_strongest_feature_as_actual(spec, lifecycle_env, tmp_path):
    """The WARN check names its actual (the highest single-feature AUC) and threshold like every
    gate, so the run summary never prints `None` for them."""
    import datetime as dt

    import polars as pl

    from lifecycle_assets.data.simulator import simulate_day
    from lifecycle_assets.ml.features import feature_table
    from lifecycle_assets.ml.leakage import LEAKAGE_AUC, LEAKAGE_CHECK

    table = feature_table(simulate_day(dt.date(2026, 1, 9)), spec).with_columns(
        pl.lit("train").alias("split")
    )
    leak_into = next(name for name in spec.feature_names if table[name].dtype.is_numeric())
    leaky = table.with_columns(pl.col(spec.target).cast(pl.Float64).alias(leak_into))
    path = tmp_path / "training_set.parquet"
    check = _check(spec, LEAKAGE_CHECK)

    table.write_parquet(path)
    clean = check(training_set={"path": str(path)})
    assert clean.passed and clean.metadata["threshold"].value == LEAKAGE_AUC
    assert clean.metadata["actual"].value < LEAKAGE_AUC

    leaky.write_parquet(path)
    flagged = check(training_set={"path": str(path)})
    assert not flagged.passed and flagged.metadata["actual"].value >= LEAKAGE_AUC
    assert leak_into in flagged.description


def test_a_refusal_by_rule_is_told_apart_from_an_error(tmp_path) -> None:
    """`champion_model` refusing (e.g. the champion moved concurrently) marks its failure, and
    `lifecycle run` maps it to exit 3; any other failure stays an error (exit 1)."""
    from lifecycle_assets.defs import names
    from lifecycle_assets.run_results import refusal_cause, refused_by_rule

    @dg.op
    def refuses() -> None:
        raise dg.Failure("not promoted: moved", metadata={names.REFUSED_METADATA_KEY: True})

    @dg.op
    def breaks() -> None:
        raise RuntimeError("disk on fire")

    for op, refused in ((refuses, True), (breaks, False)):
        result = dg.GraphDefinition(name=op.name, node_defs=[op]).execute_in_process(
            raise_on_error=False
        )
        assert not result.success and refused_by_rule(result) is refused
        # The summary prints "not promoted: <cause>": the verdict alone, not the step key and
        # a second "not promoted".
        assert refusal_cause(result) == ("moved" if refused else None)
