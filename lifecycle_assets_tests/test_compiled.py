"""Compiled inference: parity for every estimator and task, fallbacks, and a refused artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.compiled import artifact
from lifecycle_assets.compiled import compile as compiler
from lifecycle_assets.compiled.artifact import (
    COMPILED_FILE,
    STATUS_FALLBACK,
    STATUS_OK,
    TAG_COMPILED_REASON,
    TAG_COMPILED_SHA256,
    TAG_COMPILED_STATUS,
    compile_for_registration,
)
from lifecycle_assets.compiled.compile import compile_pipeline
from lifecycle_assets.compiled.model import CompiledModel
from lifecycle_assets.compiled.parity import check_parity, parity_rows
from lifecycle_assets.compiled.rows import RowEncoder, frame_inputs
from lifecycle_assets.config import ServingLimits, Settings
from lifecycle_assets.ml.features import UNKNOWN_CATEGORY, compute_features
from lifecycle_assets.ml.training import build_pipeline, fit_pipeline, model_input
from lifecycle_assets.serving.model_set import score, score_records, smoke_frame
from lifecycle_assets.serving.model_source import served_from_registry
from lifecycle_assets.serving.requests import RequestValidator
from lifecycle_assets.spec import DEFAULT_SPEC_PATHS, ModelSpec, load_spec
from lifecycle_assets_tests.conftest import register_champion

CLASSIFIER, REGRESSOR = (load_spec(path) for path in DEFAULT_SPEC_PATHS)
ESTIMATORS = [
    (CLASSIFIER, "hist_gradient_boosting"),
    (CLASSIFIER, "logistic_regression"),
    (CLASSIFIER, "random_forest"),
    (REGRESSOR, "hist_gradient_boosting"),
    (REGRESSOR, "ridge"),
    (REGRESSOR, "random_forest"),
]


def with_estimator(spec: ModelSpec, kind: str) -> ModelSpec:
    """The spec with another estimator; forests kept small so the test stays quick."""
    params = spec.estimator.params if kind == "hist_gradient_boosting" else {}
    if kind == "random_forest":
        params = {"n_estimators": 25, "min_samples_leaf": 3}
    estimator = spec.estimator.model_copy(update={"kind": kind, "params": params})
    return spec.model_copy(update={"estimator": estimator})


def split(table: pl.DataFrame, spec: ModelSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    features = table.select(
        [*spec.feature_names, spec.target, spec.id_column, "__sensitive__"]
    ).with_columns(pl.col(spec.target).cast(pl.Float64 if not spec.is_classifier else pl.Int64))
    return features.head(3_000), features.tail(features.height - 3_000)


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    import datetime as dt

    from lifecycle_assets.data.simulator import simulate_range
    from lifecycle_assets.ml.features import feature_table

    batches = simulate_range(dt.date(2026, 1, 1), 10, seed=42)
    return {
        spec.name: pl.concat([feature_table(frame, spec) for _, frame in batches])
        for spec in (CLASSIFIER, REGRESSOR)
    }


@pytest.mark.parametrize(("base", "kind"), ESTIMATORS, ids=lambda v: getattr(v, "name", v))
def test_every_estimator_compiles_with_parity(
    base: ModelSpec, kind: str, tables: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    spec = with_estimator(base, kind)
    train, test = split(tables[spec.name], spec)
    pipeline = fit_pipeline(train, spec)
    compiled = compile_for_registration(pipeline, spec, model_input(test, spec), tmp_path)
    assert compiled.tags[TAG_COMPILED_STATUS] == STATUS_OK, compiled.tags
    (path,) = compiled.files
    assert (
        compiled.tags[TAG_COMPILED_SHA256] == artifact.hashlib.sha256(path.read_bytes()).hexdigest()
    )
    # Served from the file exactly as logged; checked again here, on the test rows alone and
    # on the generated edge cases, which must contain missing, unknown and extreme values.
    model = artifact.read_compiled(path, compiled.tags[TAG_COMPILED_SHA256])
    rows = parity_rows(test, spec)
    assert rows.height > test.height
    edges = rows.tail(rows.height - min(test.height, 2_000))
    for name in spec.categorical_features:
        assert {None, UNKNOWN_CATEGORY, "never-seen"} <= set(edges[name].to_list())
    for name in spec.numeric_features:
        assert edges[name].null_count() > 0 and edges[name].max() >= 1e12
    result = check_parity(model, pipeline, spec, rows)
    assert result.ok and result.max_abs_diff <= 1e-9 and result.label_flips == 0, result
    expected = pipeline.predict_proba if spec.is_classifier else pipeline.predict
    scores = expected(model_input(test, spec))
    scores = scores[:, 1] if spec.is_classifier else scores
    np.testing.assert_allclose(model.score(*frame_inputs(test, spec)), scores, rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def default_classifier(tables: dict[str, pl.DataFrame]) -> tuple[Pipeline, pl.DataFrame]:
    """The default HistGradientBoosting classifier, fitted once, and its test rows."""
    train, test = split(tables[CLASSIFIER.name], CLASSIFIER)
    return fit_pipeline(train, CLASSIFIER), test


def test_the_file_holds_no_pickle(
    default_classifier: tuple[Pipeline, pl.DataFrame], tmp_path: Path
) -> None:
    """An npz of plain arrays and a JSON header: it loads with allow_pickle=False."""
    compiled = compile_pipeline(default_classifier[0], CLASSIFIER)
    path = compiled.save(tmp_path / COMPILED_FILE)
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)
        header = json.loads(npz["header"].tobytes())
    assert header["kind"] == "HistGradientBoostingClassifier" and header["binned"]
    assert [c["name"] for c in header["categoricals"]] == CLASSIFIER.categorical_features


def test_unsupported_pipeline_falls_back_with_reason(
    tables: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    train, test = split(tables[CLASSIFIER.name], CLASSIFIER)
    pipeline = build_pipeline(with_estimator(CLASSIFIER, "logistic_regression"))
    pipeline.steps[-1] = ("model", GradientBoostingClassifier(n_estimators=5))
    pipeline.fit(model_input(train, CLASSIFIER), train[CLASSIFIER.target].to_numpy())
    compiled = compile_for_registration(
        pipeline, CLASSIFIER, model_input(test, CLASSIFIER), tmp_path
    )
    assert compiled.tags[TAG_COMPILED_STATUS] == STATUS_FALLBACK
    assert "GradientBoostingClassifier" in compiled.tags[TAG_COMPILED_REASON]
    assert compiled.files == []


def test_a_compiled_model_that_disagrees_fails_the_gate(
    default_classifier: tuple[Pipeline, pl.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline, test = default_classifier

    def off_by_a_little(pipe: Pipeline, spec: ModelSpec) -> CompiledModel:
        model = compile_pipeline(pipe, spec)
        model.header["baseline"] += 1e-6
        return model

    monkeypatch.setattr(compiler, "compile_pipeline", off_by_a_little)
    compiled = compile_for_registration(
        pipeline, CLASSIFIER, model_input(test, CLASSIFIER), tmp_path
    )
    assert compiled.tags[TAG_COMPILED_STATUS] == STATUS_FALLBACK
    assert "max abs diff" in compiled.tags[TAG_COMPILED_REASON] and compiled.files == []


def generated_records(spec: ModelSpec, n: int, seed: int) -> list[dict]:
    """Records as clients send them, valid for the spec: each number at its bounds, zero (a
    ratio's zero denominator), huge where unbounded, integers and fractions inside the range;
    nulls where allowed; known levels, levels written differently, unknown levels."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        record: dict = {spec.id_column: f"r{i}"}
        for feature in spec.features:
            if feature.type == "numeric":
                low = -1e6 if feature.min is None else feature.min
                high = 1e9 if feature.max is None else feature.max
                options = [low, high, 0, int(rng.integers(0, 90)), float(rng.uniform(low, high))]
                value = float(np.clip(options[int(rng.integers(0, len(options)))], low, high))
                value = int(value) if value.is_integer() and rng.random() < 0.5 else value
                if feature.nullable and rng.random() < 0.25:
                    value = None
                record[feature.name] = value
            else:
                levels = list(feature.categories or ("a",))
                options = [*levels, levels[0].upper(), levels[0].title(), "never-seen"]
                record[feature.name] = options[int(rng.integers(0, len(options)))]
        records.append(record)
    return records


@pytest.mark.parametrize("spec", [CLASSIFIER, REGRESSOR], ids=lambda s: s.name)
def test_row_path_equals_polars_features(spec: ModelSpec) -> None:
    """The dict path and `compute_features` on the validator's frame give identical inputs."""
    records = generated_records(spec, 400, seed=3)
    validator = RequestValidator(spec, ServingLimits().max_batch_size, on_out_of_range="flag")
    batch = validator.validate(records)
    numeric, categorical = RowEncoder(spec).encode(batch.records)
    expected_numeric, expected_categorical = frame_inputs(compute_features(batch.frame, spec), spec)
    np.testing.assert_array_equal(numeric, expected_numeric)  # NaN equals NaN here
    assert categorical == expected_categorical
    # Exactly as written: an upper-cased or padded level is unknown on both paths.
    levels = set(spec.feature(spec.categorical_features[0]).categories or ())
    assert UNKNOWN_CATEGORY in categorical[0] and set(categorical[0]) - {UNKNOWN_CATEGORY} <= levels
    assert np.isnan(numeric).any()


def test_booleans_are_levels_on_both_paths(spec: ModelSpec) -> None:
    """JSON true/false reach the model as the spec's own spelling of the level on both paths."""
    guarantor = spec.features[-1].model_copy(
        update={
            "name": "has_guarantor",
            "categories": ("True", "False"),
            "model_input": True,
            "nullable": True,
        }
    )
    spec = spec.model_copy(update={"features": (*spec.features, guarantor)})
    records = generated_records(spec, 3, seed=9)
    for record, value in zip(records, [True, False, None], strict=True):
        record["has_guarantor"] = value
    batch = RequestValidator(spec, 10, on_out_of_range="flag").validate(records)
    _, categorical = RowEncoder(spec).encode(batch.records)
    _, expected = frame_inputs(compute_features(batch.frame, spec), spec)
    position = spec.categorical_features.index("has_guarantor")
    assert categorical[position] == expected[position] == ["True", "False", None]


def test_registered_version_serves_compiled_and_a_tampered_file_is_refused(
    lifecycle_env: Settings, spec: ModelSpec, small_feature_table: pl.DataFrame, tmp_path: Path
) -> None:
    ref = register_champion(lifecycle_env, spec, small_feature_table)
    assert ref.tags[TAG_COMPILED_STATUS] == STATUS_OK, ref.tags
    served = served_from_registry(ref)
    assert served.compiled is not None
    assert served.describe_scorer()["scorer"] == "compiled"
    records = generated_records(spec, 50, seed=5)
    batch = RequestValidator(spec, 1000, on_out_of_range="flag").validate(records)
    from_records = score_records(served, batch.records, lambda: batch.frame)
    np.testing.assert_allclose(
        from_records,
        served.loaded.pipeline.predict_proba(
            model_input(compute_features(batch.frame, spec), spec)
        )[:, 1],
        rtol=0,
        atol=1e-9,
    )

    # Tamper with the stored compiled file: the service must refuse it and serve scikit-learn.
    root = Path(lifecycle_env.mlflow_artifact_root.removeprefix("file://"))
    (stored,) = list(root.rglob(COMPILED_FILE))
    data = bytearray(stored.read_bytes())
    data[-40] ^= 0xFF
    stored.write_bytes(bytes(data))
    refused = served_from_registry(ref)
    assert refused.compiled is None
    described = refused.describe_scorer()
    assert described["scorer"] == "sklearn" and "SHA-256" in described["reason"]
    scores = score(refused, smoke_frame(spec))
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert config.TAG_ARTIFACT_SHA256 in ref.tags
