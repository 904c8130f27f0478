"""The time split, the pipeline and its safe, hash-checked artifact."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from lifecycle_assets.ml.training import assign_splits, fit_pipeline, predict_scores, time_split
from lifecycle_assets.registry.artifacts import IntegrityError, load_pipeline, save_pipeline


def test_time_split_keeps_the_future_out_of_training(spec, small_feature_table) -> None:
    days = sorted(set(small_feature_table["event_time"].dt.date().to_list()))
    split = time_split(days, spec)
    assert max(split.train_days) < min(split.validation_days) < min(split.test_days)
    assert len(split.train_days) + len(split.validation_days) + len(split.test_days) == len(days)
    table = assign_splits(small_feature_table, split, spec)
    assert set(table["split"].unique()) == {"train", "validation", "test"}
    with pytest.raises(ValueError, match="at least 3 days"):
        time_split([dt.date(2026, 1, 1)], spec)


def test_pipeline_round_trips_through_skops_with_hash(
    tmp_path: Path, spec, small_feature_table: pl.DataFrame
) -> None:
    pipeline = fit_pipeline(small_feature_table, spec)
    path = tmp_path / "model.skops"
    sha = save_pipeline(pipeline, path)
    loaded = load_pipeline(path, sha)
    rows = small_feature_table.head(50)
    assert (predict_scores(loaded, rows, spec) == predict_scores(pipeline, rows, spec)).all()

    with pytest.raises(IntegrityError, match="recorded at registration"):
        load_pipeline(path, "0" * 64)
    with pytest.raises(IntegrityError, match="no SHA-256"):
        load_pipeline(path, "")
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(IntegrityError):
        load_pipeline(path, sha)


def test_a_model_file_reaching_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    import functools
    import os

    import skops.io as sio

    from lifecycle_assets.registry.artifacts import UntrustedArtifactError, sha256_file

    path = tmp_path / "evil.skops"
    sio.dump(functools.partial(os.system, "echo never"), path)
    with pytest.raises(UntrustedArtifactError, match="system"):
        load_pipeline(path, sha256_file(path))


@pytest.mark.parametrize("kind", ["logistic_regression", "random_forest"])
def test_other_estimators_fit_and_handle_unknown_levels(spec, small_feature_table, kind) -> None:
    params = {"n_estimators": 20} if kind == "random_forest" else {}
    other = spec.model_copy(
        update={"estimator": spec.estimator.model_copy(update={"kind": kind, "params": params})}
    )
    pipeline = fit_pipeline(small_feature_table, other)
    odd = small_feature_table.head(2).with_columns(pl.lit("unheard_of").alias("region"))
    assert (
        (predict_scores(pipeline, odd, other) > 0) & (predict_scores(pipeline, odd, other) < 1)
    ).all()
