"""Drift against the reference profile, on the simulator's stable and shifted days."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
from scipy import stats

from lifecycle_assets.config import DriftThresholds
from lifecycle_assets.data.simulator import ShiftKnobs, simulate_range
from lifecycle_assets.ml.drift import DriftReport, drift_report
from lifecycle_assets.ml.drift_plots import psi_bars_png, score_distribution_png
from lifecycle_assets.ml.features import compute_features
from lifecycle_assets.ml.profile import ReferenceProfile, build_profile
from lifecycle_assets.spec import ModelSpec, default_spec

# What ShiftKnobs.covariate moves in the simulator, directly or through a derived feature.
SHIFTED = {
    "income",
    "credit_score",
    "loan_amount",
    "debt_to_income",
    "num_delinquencies",
    "loan_to_income",
    "log_income",
    "log_loan_amount",
}
THRESHOLDS = DriftThresholds()


def _features(spec: ModelSpec, start: dt.date, days: int, shift: ShiftKnobs | None = None):
    batches = simulate_range(start, days, shift=shift)
    return compute_features(pl.concat(frame for _, frame in batches), spec)


def _score(features: pl.DataFrame) -> np.ndarray:
    """A fixed stand-in for a model: riskier with lower credit scores and more debt."""
    logit = features.select(
        -0.01 * (pl.col("credit_score").fill_null(680) - 680)
        + 3 * (pl.col("debt_to_income") - 0.34)
        - 1.5
    ).to_series()
    return 1 / (1 + np.exp(-logit.to_numpy()))


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return default_spec()


@pytest.fixture(scope="module")
def reference(spec: ModelSpec) -> pl.DataFrame:
    return _features(spec, dt.date(2026, 1, 1), 30)


@pytest.fixture(scope="module")
def profile(spec: ModelSpec, reference: pl.DataFrame) -> ReferenceProfile:
    return build_profile(
        reference, _score(reference), spec.numeric_features, spec.categorical_features
    )


@pytest.fixture(scope="module")
def stable(spec: ModelSpec) -> pl.DataFrame:
    return _features(spec, dt.date(2026, 3, 1), 7)


@pytest.fixture(scope="module")
def shifted(spec: ModelSpec) -> pl.DataFrame:
    return _features(spec, dt.date(2026, 3, 1), 7, ShiftKnobs(covariate=1.0))


def test_stable_days_do_not_drift(profile: ReferenceProfile, stable: pl.DataFrame) -> None:
    report = drift_report(stable, profile, THRESHOLDS, scores=_score(stable))
    assert report.drifted_features == []
    assert not report.score_drifted
    assert not report.drifted
    assert report.rows == stable.height


def test_single_stable_days_stay_quiet(spec: ModelSpec, profile: ReferenceProfile) -> None:
    for day, raw in simulate_range(dt.date(2026, 4, 1), 10):
        report = drift_report(compute_features(raw, spec), profile, THRESHOLDS)
        assert not report.drifted, (day, report.drifted_features)


def test_covariate_shift_flags_exactly_the_shifted_features(
    profile: ReferenceProfile, shifted: pl.DataFrame
) -> None:
    report = drift_report(shifted, profile, THRESHOLDS, scores=_score(shifted))
    assert set(report.drifted_features) == SHIFTED
    assert "region" not in report.drifted_features and "age" not in report.drifted_features
    assert report.score_drifted
    assert report.drifted
    assert report.drifted_share == pytest.approx(len(SHIFTED) / len(profile.feature_names))
    reasons = {f.feature: f.reasons for f in report.features}
    assert any(r.startswith("ks_statistic") for r in reasons["credit_score"])


def test_categorical_level_shift_is_caught(profile: ReferenceProfile, stable: pl.DataFrame) -> None:
    rng = np.random.default_rng(3)
    regions = rng.choice(["north", "south", "east", "west"], stable.height, p=[0.7, 0.1, 0.1, 0.1])
    report = drift_report(stable.with_columns(region=pl.Series(regions)), profile, THRESHOLDS)
    assert report.drifted_features == ["region"]
    region = next(f for f in report.features if f.feature == "region")
    assert region.js_distance is not None and region.js_distance > 0.1
    assert region.p_value is not None and region.p_value < 1e-6


def test_unseen_levels_and_missing_rate_change(
    profile: ReferenceProfile, stable: pl.DataFrame
) -> None:
    blank = pl.int_range(pl.len()) % 3 == 0
    window = stable.with_columns(
        pl.when(blank).then(None).otherwise(pl.col("employment_years")).alias("employment_years"),
        pl.when(blank)
        .then(pl.lit("crypto"))
        .otherwise(pl.col("loan_purpose"))
        .alias("loan_purpose"),
    )
    report = drift_report(window, profile, THRESHOLDS)
    assert set(report.drifted_features) == {"employment_years", "loan_purpose"}
    employment = next(f for f in report.features if f.feature == "employment_years")
    assert any(r.startswith("missing_rate_change") for r in employment.reasons)


def test_ks_from_profile_matches_raw_rows(
    reference: pl.DataFrame, profile: ReferenceProfile, shifted: pl.DataFrame
) -> None:
    report = drift_report(shifted.lazy(), profile, THRESHOLDS)
    for feature in report.features:
        if feature.kind != "numeric":
            continue
        raw = stats.ks_2samp(
            reference[feature.feature].drop_nulls().to_numpy(),
            shifted[feature.feature].drop_nulls().to_numpy(),
        )
        # The profile sees the CDF at its edges only: never above, at most 1/bins below.
        assert raw.statistic - 1 / profile.bins - 1e-9 <= feature.ks_statistic
        assert feature.ks_statistic <= raw.statistic + 1e-9


def report_of(report: DriftReport, name: str):
    (found,) = [f for f in report.features if f.feature == name]
    return found


def _raw_wasserstein(reference: pl.DataFrame, window: pl.DataFrame, name: str) -> float:
    ref = reference[name].cast(pl.Float64).drop_nulls().to_numpy()
    cur = window[name].cast(pl.Float64).drop_nulls().to_numpy()
    return stats.wasserstein_distance(ref, cur) / ref.std(ddof=1)


@pytest.mark.parametrize("window", ["stable", "shifted"])
def test_wasserstein_from_profile_matches_raw_rows(
    reference: pl.DataFrame, profile: ReferenceProfile, window: str, request: pytest.FixtureRequest
) -> None:
    """Per-bin sums make each bin's CDF integral exact: the distance is the raw one unless the
    CDFs cross inside a bin, and then never above it (within 0.015 on stable days, where noise
    crosses them; within 1% of a shift). The left-edge rule read a 0.86 shift as 1.31."""
    rows = request.getfixturevalue(window)
    report = drift_report(rows.lazy(), profile, THRESHOLDS)
    assert report.notes == ()
    checked = 0
    for feature in report.features:
        if feature.kind != "numeric":
            continue
        raw = _raw_wasserstein(reference, rows, feature.feature)
        assert raw - 0.015 <= feature.wasserstein <= raw + 1e-9, (feature.feature, raw)
        if raw >= THRESHOLDS.wasserstein:  # a shift: the CDFs rarely cross inside a bin
            assert feature.wasserstein >= 0.99 * raw, (feature.feature, raw)
        checked += 1
    assert checked == len(profile.numeric)


def test_a_version_1_profile_still_reads_and_says_its_wasserstein_is_an_estimate(
    reference: pl.DataFrame, profile: ReferenceProfile, shifted: pl.DataFrame
) -> None:
    """Models trained before the per-bin sums keep their drift reports, with the estimate's
    limits said in the report rather than passed off as the exact figure."""
    data = profile.to_dict()
    data["version"] = 1
    for item in [*data["numeric"], data["score"]]:
        del item["sums"]
    old = ReferenceProfile.from_dict(json.loads(json.dumps(data)))
    assert all(p.sums is None for p in old.numeric)
    report = drift_report(shifted.lazy(), old, THRESHOLDS)
    assert len(report.notes) == 1 and "version 1" in report.notes[0]
    exact = drift_report(shifted.lazy(), profile, THRESHOLDS)
    by_name = {f.feature: f for f in exact.features}
    for feature in report.features:
        if feature.kind == "numeric":
            assert feature.ks_statistic == by_name[feature.feature].ks_statistic
    # The left-edge rule reads high where mass moved inside a wide bin: 1.31 for a raw 0.86.
    ratio = report_of(report, "loan_to_income").wasserstein / _raw_wasserstein(
        reference, shifted, "loan_to_income"
    )
    assert ratio > 1.3
    assert DriftReport.from_dict(json.loads(json.dumps(report.to_dict()))).notes == report.notes


def test_profile_and_report_round_trip_through_json(
    profile: ReferenceProfile, shifted: pl.DataFrame
) -> None:
    text = json.dumps(profile.to_dict())
    assert ReferenceProfile.from_dict(json.loads(text)) == profile
    assert len(text) < 64_000, "a profile is kilobytes, whatever the reference size"
    report = drift_report(shifted, profile, THRESHOLDS, scores=_score(shifted))
    again = DriftReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    table = again.table()
    assert table.height == len(profile.feature_names) + 1
    assert table.filter(pl.col("drifted"))["feature"].to_list() == [
        *report.drifted_features,
        "__score__",
    ]


def test_window_must_carry_profiled_columns(
    profile: ReferenceProfile, stable: pl.DataFrame
) -> None:
    with pytest.raises(ValueError, match="region"):
        drift_report(stable.drop("region"), profile, THRESHOLDS)


def test_drift_plots_are_png(profile: ReferenceProfile, shifted: pl.DataFrame) -> None:
    scores = _score(shifted)
    report = drift_report(shifted, profile, THRESHOLDS, scores=scores)
    for png in (psi_bars_png(report), score_distribution_png(profile, scores)):
        assert png.startswith(b"\x89PNG")


def _psi_by_hand(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI on the reference deciles of the raw rows, computed here without the profile."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.clip(np.histogram(reference, edges)[0] / reference.size, 1e-4, None)
    q = np.clip(np.histogram(current, edges)[0] / current.size, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))


def test_psi_and_js_match_a_recomputation_from_raw_rows(
    reference: pl.DataFrame, profile: ReferenceProfile, shifted: pl.DataFrame
) -> None:
    """PSI of continuous features and categorical JS/PSI/chi-square, recomputed on raw rows."""
    from scipy.spatial import distance

    report = drift_report(shifted, profile, THRESHOLDS)
    for feature in report.features:
        ref, cur = reference[feature.feature], shifted[feature.feature]
        assert feature.rows == cur.drop_nulls().len()
        assert feature.missing_rate_current == pytest.approx(cur.null_count() / cur.len())
        if feature.feature in ("credit_score", "income", "loan_to_income", "debt_to_income"):
            # Continuous: the profile's 100 fine bins merged into deciles land on the same PSI.
            by_hand = _psi_by_hand(ref.drop_nulls().to_numpy(), cur.drop_nulls().to_numpy())
            assert feature.psi == pytest.approx(by_hand, rel=0.02)
        if feature.kind == "categorical":
            levels = sorted(set(ref.drop_nulls()) | set(cur.drop_nulls()))
            r = np.array([(ref == level).sum() for level in levels], dtype=float)
            c = np.array([(cur == level).sum() for level in levels], dtype=float)
            assert feature.js_distance == pytest.approx(distance.jensenshannon(r, c, base=2))
            assert feature.p_value == pytest.approx(stats.chi2_contingency(np.vstack([r, c]))[1])
            p, q = np.clip(r / r.sum(), 1e-4, None), np.clip(c / c.sum(), 1e-4, None)
            assert feature.psi == pytest.approx(float(np.sum((q - p) * np.log(q / p))))


def test_a_window_without_values_has_no_psi_only_a_missing_rate(
    profile: ReferenceProfile, stable: pl.DataFrame
) -> None:
    """All-missing columns and an empty window: no distance at all (the PSI of an empty
    histogram against the floor is about 7, which would read as massive drift on a gauge)."""
    blank = stable.with_columns(
        pl.lit(None, pl.Float64).alias("income"), pl.lit(None, pl.String).alias("region")
    )
    report = drift_report(blank, profile, THRESHOLDS, scores=np.full(blank.height, np.nan))
    by_name = {f.feature: f for f in [*report.features, report.score]}
    for name in ("income", "region", "__score__"):
        drift = by_name[name]
        assert drift.rows == 0 and drift.missing_rate_current == 1.0
        assert drift.psi is None and drift.ks_statistic is None and drift.js_distance is None
        assert drift.drifted and drift.reasons[0].startswith("missing_rate_change")
    assert by_name["age"].psi is not None
    assert psi_bars_png(report).startswith(b"\x89PNG")

    empty = drift_report(stable.head(0), profile, THRESHOLDS, scores=np.array([]))
    assert empty.rows == 0 and not empty.drifted
    assert all(f.psi is None for f in [*empty.features, empty.score])
    # The gauges' file: null, which the service exports as NaN, never a made-up number.
    again = DriftReport.from_dict(json.loads(json.dumps(empty.to_dict())))
    assert again == empty


def _register_with_profile(settings, spec: ModelSpec, pipeline, table: pl.DataFrame) -> str:
    """A registered version whose run holds the reference profile of `table`, as training logs."""
    import mlflow

    from lifecycle_assets import config
    from lifecycle_assets.ml.training import model_input, predict_scores
    from lifecycle_assets.registry.models import log_and_register
    from lifecycle_assets.registry.tracking import configure_mlflow

    configure_mlflow(settings)
    mlflow.set_experiment(settings.mlflow_experiment)
    scores = predict_scores(pipeline, table, spec)
    profile = build_profile(table, scores, spec.numeric_features, spec.categorical_features)
    with mlflow.start_run():
        mlflow.log_dict(profile.to_dict(), config.REFERENCE_PROFILE_FILE)
        ref = log_and_register(
            pipeline,
            spec,
            input_example=model_input(table.head(5), spec),
            version_tags={
                config.TAG_TRAINING_DIGEST: "test-digest",
                config.TAG_REFERENCE_PROFILE: config.REFERENCE_PROFILE_FILE,
            },
        )
    return ref.version


def test_the_score_is_judged_on_the_judged_versions_rows_only(
    lifecycle_env, small_feature_table: pl.DataFrame
) -> None:
    """Champion v1 and a canary v2 with very different scores answer one day: the score drift
    is v1's scores against v1's profile (recomputed here), the inputs are every answered row."""
    import uuid

    import dagster as dg

    from lifecycle_assets.defs.assets.drift import build_drift_assets
    from lifecycle_assets.defs.assets.monitoring import build_monitoring_assets
    from lifecycle_assets.defs.resources import JsonIOManager, LifecycleResource, MlflowResource
    from lifecycle_assets.ml.training import fit_pipeline, predict_scores
    from lifecycle_assets_tests.log_rows import append_log_rows

    spec = default_spec()
    pipeline = fit_pipeline(small_feature_table, spec)
    v1 = _register_with_profile(lifecycle_env, spec, pipeline, small_feature_table)
    v2 = _register_with_profile(lifecycle_env, spec, pipeline, small_feature_table)
    day = dt.date(2026, 11, 2)
    raw = simulate_range(day, 1, seed=5)[0][1]
    scores = predict_scores(pipeline, compute_features(raw, spec), spec)
    # The canary answers 55% of the rows (more than the champion) with scores of its own.
    canary = np.arange(raw.height) % 20 < 11
    start = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
    rows = [
        {
            **record,
            "prediction_id": uuid.uuid4().hex,
            "predicted_at": start + dt.timedelta(seconds=i),
            "model_name": spec.name,
            "model_version": v2 if canary[i] else v1,
            "variant": "canary" if canary[i] else "champion",
            "score": float(1 - score if canary[i] else score),
        }
        for i, (record, score) in enumerate(
            zip(raw.select(f.name for f in spec.features).to_dicts(), scores, strict=True)
        )
    ]
    append_log_rows(lifecycle_env.prediction_log_dir, spec.name, rows)
    result = dg.materialize(
        [*build_monitoring_assets(spec), *build_drift_assets(spec)],
        partition_key=day.isoformat(),
        resources={
            "lifecycle": LifecycleResource(),
            "mlflow": MlflowResource(),
            "json_io_manager": JsonIOManager(base_dir=str(lifecycle_env.home / "io")),
        },
    )
    value = result.asset_value(dg.AssetKey([spec.name, "drift_report"]))
    n_champion = int((~canary).sum())
    assert value["model_version"] == v1
    assert value["rows"] == raw.height and value["score_rows"] == n_champion
    assert value["rows_per_version"] == {v1: n_champion, v2: int(canary.sum())}
    score = value["report"]["score"]
    assert score["rows"] == n_champion and not score["drifted"]
    reference = predict_scores(pipeline, small_feature_table, spec)
    assert score["psi"] == pytest.approx(_psi_by_hand(reference, scores[~canary]), abs=0.02)
