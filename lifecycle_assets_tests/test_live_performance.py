"""Delayed labels: landing and reading them, realized vs estimated performance, and the assets."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from lifecycle_assets.config import Settings
from lifecycle_assets.data import prediction_log
from lifecycle_assets.data.ground_truth import (
    LabelFileError,
    labels_folder,
    read_labels,
    write_delayed_labels,
)
from lifecycle_assets.data.simulator import ShiftKnobs, simulate_day
from lifecycle_assets.defs.assets.labels import build_label_assets
from lifecycle_assets.defs.assets.monitoring import build_monitoring_assets, serving_partitions
from lifecycle_assets.defs.names import GROUND_TRUTH, LIVE_PERFORMANCE
from lifecycle_assets.defs.resources import JsonIOManager, LifecycleResource
from lifecycle_assets.ml.features import feature_table
from lifecycle_assets.ml.live_performance import (
    estimated_performance,
    expected_roc_auc,
    join_labels,
    join_shadow_labels,
    live_report,
    performance_gap,
    realized_performance,
)
from lifecycle_assets.ml.training import fit_pipeline, predict_scores
from lifecycle_assets.spec import ModelSpec, default_spec
from lifecycle_assets_tests.log_rows import append_log_rows

P = [0.9, 0.6, 0.2, 0.1]
DAY = dt.date(2026, 2, 10)


def _frame(proba: list[float], labels: list[int | None], version: str = "1") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "prediction_id": [uuid.uuid4().hex for _ in proba],
            "model_version": [version] * len(proba),
            "score": proba,
            "label": labels,
        },
        schema_overrides={"label": pl.Int8},
    )


def test_estimated_performance_trusts_calibration() -> None:
    row = estimated_performance(_frame(P, [None] * 4)).row(0, named=True)
    assert row["rows"] == 4
    assert row["accuracy"] == pytest.approx(0.8)  # mean of max(p, 1 - p)
    assert row["positive_rate"] == pytest.approx(0.45)
    assert row["brier"] == pytest.approx(0.145)  # mean of p (1 - p)
    assert row["precision"] == pytest.approx(0.75)  # expected TP 1.5 among 2 flagged
    assert row["recall"] == pytest.approx(1.5 / 1.8)  # expected TP 1.5 of 1.8 positives
    entropy = [-(p * np.log(p) + (1 - p) * np.log(1 - p)) for p in P]
    assert row["log_loss"] == pytest.approx(np.mean(entropy))
    # Expected AUC by brute force over ordered pairs, ties counting half.
    wins = pairs = 0.0
    for i, j in itertools.permutations(range(4), 2):
        weight = P[i] * (1 - P[j])
        pairs += weight
        wins += weight * (1.0 if P[i] > P[j] else 0.5 if P[i] == P[j] else 0.0)
    assert row["roc_auc"] == pytest.approx(wins / pairs)
    assert expected_roc_auc(np.array([0.3, 0.3, 0.3])) == pytest.approx(0.5)
    assert expected_roc_auc(np.array([0.0, 0.0])) is None  # no positives can be expected


def test_estimate_matches_realized_metrics_of_a_calibrated_model() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(1.2, 3.0, 3_000)
    y = (rng.random((200, p.size)) < p).astype(int)
    estimated = estimated_performance(_frame(p.tolist(), [None] * p.size)).row(0, named=True)
    assert np.mean([roc_auc_score(row, p) for row in y]) == pytest.approx(
        estimated["roc_auc"], abs=0.005
    )
    assert np.mean((p >= 0.5) == y) == pytest.approx(estimated["accuracy"], abs=0.005)


def test_realized_performance_per_version_with_known_numbers() -> None:
    joined = pl.concat(
        [
            _frame([*P, 0.7], [1, 0, 0, 0, None], "1"),
            _frame([0.3, 0.4], [None, None], "2"),
            _frame([0.2, 0.1], [0, 0], "10"),
        ]
    )
    realized = realized_performance(joined)
    assert realized["model_version"].to_list() == ["1", "2", "10"]
    v1, v2, v10 = realized.to_dicts()
    assert (v1["rows"], v1["labelled_rows"]) == (5, 4)
    assert v1["roc_auc"] == pytest.approx(1.0)
    assert v1["accuracy"] == pytest.approx(0.75)
    assert v1["precision"] == pytest.approx(0.5)
    assert v1["recall"] == pytest.approx(1.0)
    assert v1["brier"] == pytest.approx(0.105)
    assert v1["positive_rate"] == pytest.approx(0.25)
    # No label yet: every metric is absent, not zero.
    assert v2["labelled_rows"] == 0
    assert all(v2[m] is None for m in ("roc_auc", "accuracy", "brier", "log_loss"))
    # One class only: AUC and the undefined rates are absent, the rest still measured.
    assert v10["roc_auc"] is None and v10["precision"] is None and v10["recall"] is None
    assert v10["accuracy"] == pytest.approx(1.0)
    assert v10["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.9])))


def test_gap_is_realized_minus_estimated_once_labels_exist() -> None:
    joined = pl.concat([_frame(P, [1, 0, 0, 0], "1"), _frame([0.3], [None], "2")])
    gap = performance_gap(realized_performance(joined), estimated_performance(joined))
    assert gap["model_version"].to_list() == ["1"]  # version 2 has no label yet
    row = gap.row(0, named=True)
    assert row["accuracy"] == pytest.approx(0.75 - 0.8)
    assert row["brier"] == pytest.approx(0.105 - 0.145)
    assert row["positive_rate"] == pytest.approx(0.25 - 0.45)


def test_report_before_labels_shows_only_the_estimate() -> None:
    report = live_report(_frame(P, [None] * 4))
    assert report["labelled_rows"] == 0 and report["label_coverage"] == 0.0
    (entry,) = report["versions"]
    assert entry["realized"] is None and entry["gap"] is None
    assert entry["estimated"]["accuracy"] == pytest.approx(0.8)
    json.dumps(report, allow_nan=False)


def _predictions(day: dt.date, n: int) -> pl.DataFrame:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return pl.DataFrame(
        {
            "prediction_id": [f"p{i}" for i in range(n)],
            "record_id": [f"r{i}" for i in range(n)],
            # Spread over the day: 00:00, 01:00, ... so a 36 h delay crosses two label days.
            "predicted_at": [(start + dt.timedelta(hours=i % 24)).isoformat() for i in range(n)],
        }
    )


def test_delayed_labels_arrive_on_prediction_day_plus_delay(tmp_path: Path) -> None:
    predictions = _predictions(DAY, 48)
    # r47 has no known outcome: it is never labelled.
    truth = pl.DataFrame(
        {"application_id": [f"r{i}" for i in range(47)], "default": [1, 0] * 23 + [1]}
    )
    land = functools.partial(
        write_delayed_labels,
        predictions,
        truth,
        record_id_column="application_id",
        label_column="default",
    )
    written = land(delay=dt.timedelta(hours=36), out_dir=tmp_path)
    assert len(written) == 2  # one file per arrival day
    arrived = {
        offset: read_labels(tmp_path, DAY + dt.timedelta(days=offset)) for offset in range(4)
    }
    assert arrived[0].is_empty() and arrived[3].is_empty()  # never before the delay
    # Predicted 00:00-11:59 -> labelled 12:00-23:59 next day; the rest the day after.
    assert arrived[1].height == 24 and arrived[2].height == 23
    both = pl.concat([arrived[1], arrived[2]])
    assert both["prediction_id"].n_unique() == 47 and "p47" not in both["prediction_id"]
    stamped = both.join(predictions, on="prediction_id").with_columns(
        pl.col("predicted_at").str.to_datetime(time_unit="us", time_zone="UTC")
    )
    assert (stamped["labelled_at"] - stamped["predicted_at"] == dt.timedelta(hours=36)).all()
    # Writing again is harmless: same content, same file names.
    assert land(delay=dt.timedelta(hours=36), out_dir=tmp_path) == written

    partial = land(delay=dt.timedelta(days=3), out_dir=tmp_path / "partial", fraction=0.5, seed=1)
    labelled = read_labels(tmp_path / "partial", DAY + dt.timedelta(days=3)).height
    assert len(partial) == 1 and 10 < labelled < 37  # some labels never arrive


def test_read_labels_keeps_the_last_label_and_names_bad_files(tmp_path: Path) -> None:
    first = pl.DataFrame(
        {"prediction_id": ["a", "b"], "label": [0, 1], "labelled_at": ["2026-02-10T08:00:00Z"] * 2}
    )
    first.write_csv(tmp_path / "a.csv")
    correction = pl.DataFrame(
        {
            "prediction_id": ["a"],
            "label": [1],
            "labelled_at": [dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC)],
        }
    )
    correction.write_parquet(tmp_path / "b.parquet")
    labels = read_labels(tmp_path, DAY).sort("prediction_id")
    assert labels["label"].to_list() == [1, 1]
    assert labels.schema["labelled_at"] == pl.Datetime("us", "UTC")

    bad_files = {
        "c.csv": (first.drop("label"), r"missing column.*'label'"),
        "c.parquet": (first.with_columns(label=pl.Series([0.0, 0.5])), r"'label'.* found '0.5'"),
        "d.csv": (first.with_columns(labelled_at=pl.lit("yesterday")), r": column 'labelled_at'"),
    }
    for name, (frame, message) in bad_files.items():
        path = tmp_path / name
        if path.suffix == ".csv":
            frame.write_csv(path)
        else:
            frame.write_parquet(path)
        with pytest.raises(LabelFileError, match=rf"{name.replace('.', '[.]')}.*{message}"):
            read_labels(tmp_path, DAY)
        path.unlink()


# -- end to end: the service's log, delayed labels from the simulator, the two assets ----------
STABLE_DAY, SHIFTED_DAY = dt.date(2026, 2, 10), dt.date(2026, 2, 11)
# concept=1.0 costs this model only about 0.02-0.03 of AUC: at 2,000 rows a day that is within
# day-to-day noise, at 10,000 it stood out on every pair of days tried (drops of 0.020-0.027).
ROWS_PER_DAY = 10_000


@pytest.fixture(scope="module")
def pipeline(small_feature_table: pl.DataFrame) -> Pipeline:
    return fit_pipeline(small_feature_table, default_spec())


def _serve(settings: Settings, spec: ModelSpec, pipeline: Pipeline, batch: pl.DataFrame) -> None:
    """Append what the service would have logged for `batch`, one JSON line per prediction."""
    proba = predict_scores(pipeline, feature_table(batch, spec), spec)
    rows = [
        {f.name: record[f.name] for f in spec.features}
        | {
            "score": p,
            "prediction": int(p >= 0.5),
            "prediction_id": uuid.uuid4().hex,
            "record_id": record[spec.id_column],
            "model_name": spec.name,
            "model_version": "1",
            "training_digest": "test-digest",
            "predicted_at": record[spec.timestamp],
        }
        for record, p in zip(batch.iter_rows(named=True), proba.tolist(), strict=True)
    ]
    append_log_rows(settings.prediction_log_dir, spec.name, rows)


def _land_labels(settings: Settings, spec: ModelSpec, day: dt.date, batch: pl.DataFrame) -> None:
    """The simulator's labelling side: each outcome lands one day after its prediction."""
    write_delayed_labels(
        prediction_log.read_day(settings, spec.name, day),
        batch,
        record_id_column=spec.id_column,
        label_column=spec.target,
        delay=dt.timedelta(days=1),
        out_dir=labels_folder(settings.landing_dir, spec.name),
    )


def _materialize(
    spec: ModelSpec, day: dt.date, only: list[str] | None = None
) -> dg.ExecuteInProcessResult:
    assets = build_monitoring_assets(spec) + build_label_assets(spec)
    result = dg.materialize(
        assets,
        partition_key=day.isoformat(),
        selection=[dg.AssetKey([spec.name, name]) for name in only] if only else None,
        resources={"lifecycle": LifecycleResource(), "json_io_manager": JsonIOManager()},
    )
    assert result.success
    return result


def _metadata(result: dg.ExecuteInProcessResult, spec: ModelSpec, name: str) -> dict:
    key = dg.AssetKey([spec.name, name])
    (event,) = [m for m in result.get_asset_materialization_events() if m.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _performance(result: dg.ExecuteInProcessResult, spec: ModelSpec) -> tuple[dict, dict]:
    key = dg.AssetKey([spec.name, LIVE_PERFORMANCE])
    return result.asset_value(key), _metadata(result, spec, LIVE_PERFORMANCE)


def test_label_assets_are_daily_serving_partitions(spec: ModelSpec) -> None:
    assets = build_label_assets(spec)
    assert [a.key.path for a in assets] == [
        [spec.name, GROUND_TRUTH],
        [spec.name, LIVE_PERFORMANCE],
    ]
    assert all(a.partitions_def == serving_partitions(spec) for a in assets)
    deps = {key.path[-1] for key in assets[1].asset_deps[assets[1].key]}
    assert deps == {GROUND_TRUTH, "prediction_log"}


def test_concept_shift_shows_in_live_performance_once_labels_arrive(
    lifecycle_env: Settings, spec: ModelSpec, pipeline: Pipeline
) -> None:
    stable = simulate_day(STABLE_DAY, rows_per_day=ROWS_PER_DAY)
    shifted = simulate_day(SHIFTED_DAY, rows_per_day=ROWS_PER_DAY, shift=ShiftKnobs(concept=1.0))
    for day, batch in ((STABLE_DAY, stable), (SHIFTED_DAY, shifted)):
        _serve(lifecycle_env, spec, pipeline, batch)
        _land_labels(lifecycle_env, spec, day, batch)

    # Before its labels arrive, a day shows the estimate only, and says so.
    result = _materialize(spec, STABLE_DAY)
    assert _metadata(result, spec, GROUND_TRUTH)["rows"] == 0
    value, metadata = _performance(result, spec)
    assert value["rows"] == ROWS_PER_DAY and value["labelled_rows"] == 0
    assert value["versions"][0]["realized"] is None and value["overall"]["gap"] is None
    assert "Labels have not arrived" in metadata["summary"]
    assert "realized_roc_auc" not in metadata and metadata["estimated_roc_auc"] > 0.7
    assert metadata["label_coverage"] == 0.0

    ground_truth = _metadata(_materialize(spec, SHIFTED_DAY), spec, GROUND_TRUTH)
    assert ground_truth["rows"] == ROWS_PER_DAY and ground_truth["files_read"] == 1
    # The day after the shifted one: nothing was served, its labels land.
    value, metadata = _performance(_materialize(spec, SHIFTED_DAY + dt.timedelta(days=1)), spec)
    assert value["rows"] == 0 and "No predictions" in metadata["summary"]

    # Re-materialized once labels are in: realized beside estimated, and the gap.
    stable_value, stable_md = _performance(_materialize(spec, STABLE_DAY, [LIVE_PERFORMANCE]), spec)
    shifted_value, shifted_md = _performance(
        _materialize(spec, SHIFTED_DAY, [LIVE_PERFORMANCE]), spec
    )
    for value, metadata in ((stable_value, stable_md), (shifted_value, shifted_md)):
        assert value["label_coverage"] == 1.0 and metadata["labelled_rows"] == ROWS_PER_DAY
        assert "| 1 | roc_auc |" in metadata["performance"]
    assert shifted_md["realized_roc_auc"] < stable_md["realized_roc_auc"] - 0.01
    # The estimate cannot see a concept shift (the scores look as usual), so the gap opens.
    # Even stable days show about -0.03: this model is over-confident, which is why the gap is
    # compared with a stable day's rather than with zero.
    assert shifted_md["roc_auc_gap"] < -0.04
    assert shifted_md["roc_auc_gap"] < stable_md["roc_auc_gap"] - 0.01
    assert shifted_value["overall"]["gap"]["accuracy"] < stable_value["overall"]["gap"]["accuracy"]


def test_two_versions_are_measured_each_on_its_own_rows(
    lifecycle_env: Settings, spec: ModelSpec, pipeline: Pipeline
) -> None:
    """Champion v1 and a broken canary v2 answer one day; labels land (one twice, corrected,
    and one for an id nobody predicted). Each version's figures are recomputed here with
    scikit-learn on its own labelled rows; no pooled AUC of two models is shown as "the" AUC."""
    batch = simulate_day(STABLE_DAY, rows_per_day=2_000)
    proba = predict_scores(pipeline, feature_table(batch, spec), spec)
    canary = np.arange(batch.height) % 3 == 0
    scores = np.where(canary, 1 - proba, proba)  # the canary ranks upside down
    rows = [
        {f.name: record[f.name] for f in spec.features}
        | {
            "score": float(p),
            "prediction_id": f"p-{i}",
            "record_id": record[spec.id_column],
            "model_name": spec.name,
            "model_version": "2" if canary[i] else "1",
            "variant": "canary" if canary[i] else "champion",
            "predicted_at": record[spec.timestamp],
        }
        for i, (record, p) in enumerate(zip(batch.iter_rows(named=True), scores, strict=True))
    ]
    append_log_rows(lifecycle_env.prediction_log_dir, spec.name, rows)
    _land_labels(lifecycle_env, spec, STABLE_DAY, batch)
    truth = batch[spec.target].to_numpy().astype(int)
    at = dt.datetime.combine(STABLE_DAY + dt.timedelta(days=1), dt.time(23), tzinfo=dt.UTC)
    truth[0] = 1 - truth[0]  # a correction, arriving later than the first label of p-0
    pl.DataFrame(
        {"prediction_id": ["p-0", "nobody"], "label": [truth[0], 1], "labelled_at": [at, at]}
    ).write_parquet(labels_folder(lifecycle_env.landing_dir, spec.name) / "z-fix.parquet")

    _materialize(spec, STABLE_DAY, ["prediction_log"])
    _materialize(spec, STABLE_DAY + dt.timedelta(days=1), [GROUND_TRUTH])
    value, metadata = _performance(_materialize(spec, STABLE_DAY, [LIVE_PERFORMANCE]), spec)
    assert value["rows"] == batch.height and value["labelled_rows"] == batch.height
    for version, mask in (("1", ~canary), ("2", canary)):
        entry = next(e for e in value["versions"] if e["model_version"] == version)
        assert entry["rows"] == entry["labelled_rows"] == int(mask.sum())
        auc = roc_auc_score(truth[mask], scores[mask])
        assert entry["realized"]["roc_auc"] == pytest.approx(auc)
        assert metadata[f"v{version}_realized_roc_auc"] == pytest.approx(auc, abs=1e-4)
        assert f"v{version} realized roc_auc {auc:.3f}" in metadata["summary"]
    assert "realized_roc_auc" not in metadata and "estimated_roc_auc" not in metadata


def test_the_shadow_is_measured_on_the_labels_of_the_answers_it_mirrors(
    lifecycle_env: Settings, spec: ModelSpec, pipeline: Pipeline
) -> None:
    """A shadow v2 scores every answered row of champion v1; labels name the answers only.
    The shadow gets its own entry (recomputed here), and no total counts its rows."""
    batch = simulate_day(STABLE_DAY, rows_per_day=1_000)
    proba = predict_scores(pipeline, feature_table(batch, spec), spec)
    shadow_scores = np.clip(proba + np.random.default_rng(2).normal(0, 0.2, proba.size), 0, 1)
    rows = []
    for i, (record, p, q) in enumerate(
        zip(batch.iter_rows(named=True), proba, shadow_scores, strict=True)
    ):
        common = {f.name: record[f.name] for f in spec.features} | {
            "record_id": record[spec.id_column],
            "model_name": spec.name,
            "predicted_at": record[spec.timestamp],
        }
        rows.append(
            common
            | {"prediction_id": f"a-{i}", "score": float(p), "model_version": "1"}
            | {"variant": "champion", "shadow_of": None}
        )
        rows.append(
            common
            | {"prediction_id": f"s-{i}", "score": float(q), "model_version": "2"}
            | {"variant": "shadow", "shadow_of": f"a-{i}"}
        )
    append_log_rows(lifecycle_env.prediction_log_dir, spec.name, rows)
    # Labels for the answered ids only, as the labelling side knows no other.
    answers = pl.DataFrame(rows).filter(pl.col("variant") == "champion")
    write_delayed_labels(
        answers.with_columns(pl.col("predicted_at").cast(pl.String)),
        batch,
        record_id_column=spec.id_column,
        label_column=spec.target,
        delay=dt.timedelta(hours=0),
        out_dir=labels_folder(lifecycle_env.landing_dir, spec.name),
    )
    result = _materialize(spec, STABLE_DAY)
    logged = _metadata(result, spec, "prediction_log")
    assert logged["rows"] == 2 * batch.height
    assert logged["answered_rows"] == logged["shadow_rows"] == batch.height
    assert logged["predictions_per_version"] == [
        {"model_version": "1", "variant": "champion", "len": batch.height},
        {"model_version": "2", "variant": "shadow", "len": batch.height},
    ]
    value, metadata = _performance(result, spec)
    truth = batch[spec.target].to_numpy().astype(int)
    assert value["rows"] == value["labelled_rows"] == batch.height  # answers only
    assert [e["model_version"] for e in value["versions"]] == ["1"]
    (shadow,) = value["shadow"]
    assert shadow["model_version"] == "2" and shadow["labelled_rows"] == batch.height
    assert shadow["realized"]["roc_auc"] == pytest.approx(roc_auc_score(truth, shadow_scores))
    assert value["versions"][0]["realized"]["roc_auc"] == pytest.approx(roc_auc_score(truth, proba))
    assert metadata["shadow_v2_realized_roc_auc"] == pytest.approx(
        roc_auc_score(truth, shadow_scores), abs=1e-4
    )
    assert "| 2 (shadow) | roc_auc |" in metadata["performance"]


def test_a_regressor_day_without_labels_says_how_many_predictions_wait() -> None:
    from lifecycle_assets.defs.assets.labels import _summary

    joined = _frame([120.0, 80.5, 3000.0], [None, None, None]).with_columns(
        pl.col("label").cast(pl.Float64)
    )
    text = _summary("2026-02-10", live_report(joined, "regression"), "r2")
    assert text == (
        "Labels have not arrived yet for the 3 predictions of 2026-02-10: realized errors "
        "appear once they do."
    )


def test_a_label_stamped_before_its_prediction_is_counted_and_never_used(
    lifecycle_env: Settings, spec: ModelSpec, pipeline: Pipeline
) -> None:
    """A user's label file whose `labelled_at` precedes the prediction it labels (a wrong
    clock, a wrong id) names an outcome that could not have been known: live performance does
    not score it, counts it, and says so."""
    batch = simulate_day(STABLE_DAY, rows_per_day=400)
    _serve(lifecycle_env, spec, pipeline, batch)
    logged = prediction_log.read_day(lifecycle_env, spec.name, STABLE_DAY)
    truth = dict(zip(batch[spec.id_column], batch[spec.target], strict=True))
    # Five predictions made after 01:00 get a label half an hour before them, the same day.
    early_ids = set(
        logged.filter(pl.col("predicted_at").dt.hour() >= 1)["prediction_id"].head(5).to_list()
    )
    assert len(early_ids) == 5
    rows = [
        {
            "prediction_id": pid,
            "label": truth[record],
            "labelled_at": (
                at - dt.timedelta(minutes=30) if pid in early_ids else at + dt.timedelta(days=1)
            ).isoformat(),
        }
        for pid, record, at in logged.select("prediction_id", "record_id", "predicted_at").rows()
    ]
    folder = labels_folder(lifecycle_env.landing_dir, spec.name)
    folder.mkdir(parents=True)
    pl.DataFrame(rows).write_csv(folder / "from-the-bank.csv")

    _materialize(spec, STABLE_DAY)
    _materialize(spec, STABLE_DAY + dt.timedelta(days=1))
    value, metadata = _performance(_materialize(spec, STABLE_DAY, [LIVE_PERFORMANCE]), spec)
    assert value["labelled_rows"] == 395 and metadata["labelled_rows"] == 395
    assert value["premature_labels"] == 5 and metadata["premature_labels"] == 5
    assert value["versions"][0]["premature_labels"] == 5
    assert "5 label(s) stamped before their prediction, not used" in metadata["summary"]


def test_a_shadow_label_is_judged_against_the_answer_it_mirrors() -> None:
    """The shadow scores an answer later: a label that arrived between the answer and the
    shadow's scoring is on time; one before the answer is premature for the shadow too."""
    at = dt.datetime(2026, 2, 10, 12, tzinfo=dt.UTC)
    log = pl.DataFrame(
        {
            "prediction_id": ["a1", "a2", "s1", "s2"],
            "model_version": ["1", "1", "2", "2"],
            "score": [0.2, 0.8, 0.3, 0.7],
            "variant": ["champion", "champion", "shadow", "shadow"],
            "shadow_of": [None, None, "a1", "a2"],
            "predicted_at": [at, at, at + dt.timedelta(hours=1), at + dt.timedelta(hours=1)],
        }
    )
    labels = pl.DataFrame(
        {
            "prediction_id": ["a1", "a2"],
            "label": [0.0, 1.0],
            "labelled_at": [at + dt.timedelta(minutes=30), at - dt.timedelta(minutes=1)],
        }
    )
    shadow = join_shadow_labels(log, labels)
    assert shadow["label"].to_list() == [0.0, None]
    assert shadow["premature_label"].to_list() == [False, True]
    answered_rows = log.filter(pl.col("variant") == "champion")
    report = live_report(join_labels(answered_rows, labels), shadow=shadow)
    assert report["premature_labels"] == 1 and report["shadow"][0]["premature_labels"] == 1


def test_a_day_almost_labelled_never_reads_100_percent_and_an_unlabelled_version_says_so() -> None:
    """`lifecycle monitor` after the README's curl and `simulate-traffic`: 400 of 401 labelled
    (the curl's one v1 answer has no label) printed "(100%)" and "v1 roc_auc undefined on the
    labels arrived so far on 0 labels"."""
    from lifecycle_assets.defs.assets.labels import _summary

    rng = np.random.default_rng(0)
    truth = [int(x) for x in rng.random(400) < 0.3]
    scored = _frame(list(rng.random(400)), truth, version="2")
    joined = pl.concat([_frame([0.22], [None], version="1"), scored])
    text = _summary("2026-12-01", live_report(joined, "binary_classification"), "roc_auc")
    assert text.startswith("400/401 predictions of 2026-12-01 labelled (99.7%): "), text
    assert "v1 has no label yet on its 1 prediction(s); v2 realized roc_auc" in text, text
    assert "undefined" not in text and "100%" not in text


def test_a_regressor_summary_names_r2_rmse_and_mae() -> None:
    """README (Monitor): `monitor` prints "realized errors (R², RMSE, MAE) for a regressor"; it
    printed R² alone."""
    from lifecycle_assets.defs.assets.labels import _summary

    joined = pl.DataFrame(
        {
            "prediction_id": [uuid.uuid4().hex for _ in range(4)],
            "model_version": ["1"] * 4,
            "score": [100.0, 200.0, 300.0, 400.0],
            "label": [110.0, 190.0, 330.0, 380.0],  # errors 10, 10, 30, 20
        }
    )
    text = _summary("2026-02-10", live_report(joined, "regression"), "r2")
    assert text == (
        "4/4 predictions of 2026-02-10 labelled (100%): realized r2 0.968, rmse 19.365, mae 17.500."
    ), text
