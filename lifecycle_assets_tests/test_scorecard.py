"""The portfolio health scorecard: facts read from real files, the retirement policy, the asset."""

import dataclasses
import datetime as dt
import json
import uuid
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import polars as pl
import pytest

from lifecycle_assets import config
from lifecycle_assets.config import RetirementPolicy, Settings
from lifecycle_assets.defs.assets.portfolio import (
    RETIREMENT_CHECK,
    SCORECARD_KEY,
    build_portfolio_defs,
)
from lifecycle_assets.defs.resources import JsonIOManager, LifecycleResource, MlflowResource
from lifecycle_assets.ml import live_performance, scorecard, scorecard_html, scorecard_sources
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.ml.training import model_input
from lifecycle_assets.registry.aliases import move_alias
from lifecycle_assets.registry.ledger import COMMITTED, Ledger
from lifecycle_assets.registry.models import load_version, log_and_register
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.registry.verdicts import seal_then_write
from lifecycle_assets.spec import BUILTIN_SPECS_DIR, ModelSpec, Task, load_spec
from lifecycle_assets_tests.log_rows import append_log_rows
from lifecycle_assets_tests.test_hot_swap import register_copy

TODAY = dt.date(2026, 3, 1)
POLICY = RetirementPolicy()


def at_home(home: Path) -> Settings:
    """Settings whose logs live under `home` (no registry is read through them)."""
    return Settings.from_env({"LIFECYCLE_HOME": str(home)})


def write_log(log_dir: Path, model: str, day: dt.date, rows: int, **extra: object) -> None:
    """Append `rows` answered predictions of `day` plus one shadow row, as the service logs."""
    start = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
    lines = [
        {
            "score": 0.3,
            "prediction": 0,
            "prediction_id": uuid.uuid4().hex,
            "model_name": model,
            "model_version": "1",
            "variant": "shadow" if i == rows else "champion",
            "predicted_at": start + dt.timedelta(minutes=i),
            **{k: (v(i) if callable(v) else v) for k, v in extra.items()},
        }
        for i in range(rows + 1)
    ]
    append_log_rows(log_dir, model, lines)


def write_live_day(
    live_dir: Path, day: dt.date, version: str, good: bool, task: Task = "binary_classification"
) -> None:
    """A day's live performance report as the asset stores it, from the real report functions."""
    rng, rows = np.random.default_rng(day.toordinal()), 300
    if task == "regression":
        labels = rng.gamma(2.0, 100.0, rows)
        # Close predictions give an R² near 1; unrelated ones one at or below 0.
        scores = labels + rng.normal(0, 10, rows) if good else rng.permutation(labels)
    else:
        labels = rng.integers(0, 2, rows).astype(float)
        # Informative scores give a high realized AUC; random ones about 0.5, under the floor.
        scores = labels * 0.6 + rng.uniform(0, 0.4, rows) if good else rng.random(rows)
    joined = pl.DataFrame(
        {
            "prediction_id": [uuid.uuid4().hex for _ in range(rows)],
            live_performance.VERSION: [version] * rows,
            live_performance.SCORE: scores,
            "label": labels,
        }
    )
    report = {"day": day.isoformat(), **live_performance.live_report(joined, task)}
    live_dir.mkdir(parents=True, exist_ok=True)
    (live_dir / f"{day.isoformat()}.json").write_text(json.dumps(report, default=str))


def health(
    spec: ModelSpec, tmp_path: Path, live_days: dict[dt.date, bool]
) -> scorecard.ModelHealth:
    """A registered model's row whose traffic and live windows come from files under tmp_path."""
    live_dir = tmp_path / "live" / spec.name
    for day, good in live_days.items():
        write_live_day(live_dir, day, "1", good, spec.task)
    metric = traits(spec).primary_metric
    return scorecard.ModelHealth(
        model=spec.name,
        task=spec.task,
        metric=metric,
        metric_floor=scorecard_sources.metric_floor(spec),
        registered_at=dt.datetime(2025, 12, 1, tzinfo=dt.UTC),
        last_retrain_at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC),
        champion=scorecard_sources.Champion("1", None, None, None, 0),
        offline_metric=None,
        offline_delta=None,
        live=scorecard_sources.live_windows(live_dir, "1", metric, POLICY, TODAY),
        drift_day=None,
        drifted=None,
        traffic=scorecard_sources.traffic(at_home(tmp_path), spec.name, POLICY, TODAY),
        gates=scorecard_sources.GateHistory(1, 0, 0, ()),
    )


def _days(*back: int) -> list[dt.date]:
    return [TODAY - dt.timedelta(days=n) for n in back]


def test_a_model_without_traffic_for_longer_than_the_policy_is_flagged(spec, tmp_path) -> None:
    write_log(
        at_home(tmp_path).prediction_log_dir, spec.name, TODAY - dt.timedelta(days=21), rows=5
    )
    row = health(spec, tmp_path, dict.fromkeys(_days(3, 2, 1), True))
    assert row.traffic.requests == 0
    assert row.traffic.last_request_at.date() == TODAY - dt.timedelta(days=21)
    assert scorecard.retirement_candidates([row], POLICY, TODAY) == {
        spec.name: ["no traffic for 21 days (policy: 14)"]
    }


def test_a_model_below_its_floor_for_the_last_windows_is_flagged(spec, tmp_path) -> None:
    write_log(at_home(tmp_path).prediction_log_dir, spec.name, TODAY, rows=5)
    # An old good day, then three bad ones: the last three windows decide.
    row = health(
        spec, tmp_path, {**dict.fromkeys(_days(9), True), **dict.fromkeys(_days(3, 2, 1), False)}
    )
    assert len(row.live) == 4 and all(w.value < 0.7 for w in row.live[-3:])
    assert row.live_trend(POLICY.trend_windows) < 0, "falling from a good day"
    assert scorecard.retirement_reasons(row, POLICY, TODAY) == [
        "live roc_auc below floor 0.7 for 3 of the last 3 windows"
    ]


def test_a_healthy_model_is_not_flagged(spec, tmp_path) -> None:
    latency = lambda i: float(10 + i)  # noqa: E731 - one value per row: 10, 11, ... ms
    write_log(
        at_home(tmp_path).prediction_log_dir,
        spec.name,
        TODAY - dt.timedelta(days=1),
        rows=100,
        latency_ms=latency,
    )
    # Two bad days among good ones are not "every one of the last three".
    row = health(
        spec, tmp_path, {**dict.fromkeys(_days(4, 3), False), **dict.fromkeys(_days(2, 1), True)}
    )
    assert row.traffic.requests == 100, "the shadow row is not traffic"
    assert row.traffic.p99_latency_ms == pytest.approx(np.quantile(np.arange(10, 110), 0.99), abs=1)
    assert scorecard.retirement_candidates([row], POLICY, TODAY) == {}


def test_unknown_latency_stays_unknown_and_a_new_model_is_not_silent_long(spec, tmp_path) -> None:
    write_log(at_home(tmp_path).prediction_log_dir, spec.name, TODAY, rows=3, latency_ms=None)
    row = health(spec, tmp_path, {})
    assert row.traffic.p99_latency_ms is None and row.traffic.latency_rows == 0
    new = dataclasses.replace(
        row,
        registered_at=dt.datetime(2026, 2, 24, tzinfo=dt.UTC),
        traffic=scorecard_sources.Traffic(0, None, None, 0),
    )
    assert scorecard.silent_days(new, POLICY, TODAY) == (5, "since registration")
    assert scorecard.retirement_reasons(new, POLICY, TODAY) == []
    html = scorecard_html.render_html([row], POLICY, TODAY)
    assert "unknown" in html and 'class="flag"' not in html


def test_a_regressor_is_judged_on_r2_against_its_own_floor(tmp_path) -> None:
    spec = load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml")
    write_log(at_home(tmp_path).prediction_log_dir, spec.name, TODAY, rows=5)
    row = health(spec, tmp_path, dict.fromkeys(_days(3, 2, 1), False))
    floor = spec.gate_thresholds().min_r2
    assert row.metric == "r2" and row.metric_floor == floor
    assert scorecard.retirement_reasons(row, POLICY, TODAY) == [
        f"live r2 below floor {floor:g} for 3 of the last 3 windows"
    ]


def _evaluated(settings: Settings, ref: ModelRef, test_auc: float, passed: bool) -> None:
    """What the evaluation asset leaves behind: evaluation.json and the run's test metric."""
    folder = settings.reports_dir / ref.name / f"v{ref.version}"
    folder.mkdir(parents=True)
    gates = [{"name": "auc_meets_minimum", "passed": passed, "actual": test_auc, "threshold": 0.7}]
    (folder / "evaluation.json").write_text(json.dumps({"gates": gates}))
    configure_mlflow(settings).log_metric(ref.run_id, "test_roc_auc", test_auc)


def _retrained(settings: Settings, spec: ModelSpec, ref: ModelRef, table: pl.DataFrame) -> ModelRef:
    """A second version (the same pipeline registered again), promoted over the first."""
    client = configure_mlflow(settings)
    with mlflow.start_run():
        new = log_and_register(
            load_version(ref).pipeline,
            spec,
            input_example=model_input(table, spec),
            version_tags={config.TAG_TRAINING_DIGEST: "test-digest-2"},
        )
    move_alias(client, spec.name, config.CHAMPION_ALIAS, new.version, reason="t", actor="pytest")
    return new


def _materialize_scorecard(specs: list[ModelSpec]) -> dg.ExecuteInProcessResult:
    """The scorecard asset and its check over `specs`, with the environment's stores."""
    defs = build_portfolio_defs(specs)
    return dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources={
            "lifecycle": LifecycleResource(),
            "mlflow": MlflowResource(),
            "json_io_manager": JsonIOManager(),
        },
        selection=[SCORECARD_KEY],
    )


def test_the_asset_shows_the_table_and_flags_the_candidate(
    lifecycle_env: Settings,
    registered_champion: ModelRef,
    spec: ModelSpec,
    small_feature_table: pl.DataFrame,
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    _evaluated(lifecycle_env, registered_champion, 0.80, passed=True)
    champion = _retrained(lifecycle_env, spec, registered_champion, small_feature_table)
    _evaluated(lifecycle_env, champion, 0.78, passed=False)
    write_log(lifecycle_env.prediction_log_dir, spec.name, today, rows=20, latency_ms=12.5)
    live_dir = lifecycle_env.home / "dagster_io" / spec.name / "live_performance"
    for back in (3, 2, 1):
        write_live_day(live_dir, today - dt.timedelta(days=back), champion.version, False)
    regressor = load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml")  # never trained here
    result = _materialize_scorecard([spec, regressor])
    assert result.success
    metadata = result.asset_materializations_for_node("portfolio__health_scorecard")[0].metadata
    table = metadata["scorecard"].value
    rows = {r.data["model"]: r.data for r in table.records}
    assert set(rows) == {spec.name, regressor.name}
    credit = rows[spec.name]
    assert {column.name for column in table.schema.columns} == set(credit)
    assert credit["champion"] == f"v{champion.version}" and credit["promoted_by"] == "pytest"
    # Age from the ledger's promotion day to the asset's own day: right across midnight UTC too.
    promoted = Ledger.for_settings(lifecycle_env).entries(
        spec.name, config.CHAMPION_ALIAS, COMMITTED
    )
    as_of = dt.date.fromisoformat(result.output_for_node("portfolio__health_scorecard")["as_of"])
    age = (as_of - dt.datetime.fromisoformat(promoted[-1].time).date()).days
    assert credit["champion_age_days"] == age and age in (0, 1)
    assert credit["offline_metric"] == pytest.approx(0.78)
    assert credit["previous_champion"] == registered_champion.version
    assert credit["offline_delta"] == pytest.approx(-0.02)
    assert credit["requests"] == 20 and credit["p99_latency_ms"] == pytest.approx(12.5)
    # Both written as before verdicts were sealed: counted, and marked as read unchecked.
    assert credit["gates"] == "1 passed, 1 failed (2 read unchecked)"
    assert credit["gates_tampered"] == 0 and credit["drift"] == "no report"
    assert credit["gate_failures"] == f"v{champion.version}: auc_meets_minimum"
    assert credit["retirement_candidate"] is True
    assert credit["retirement_reasons"] == (
        "live roc_auc below floor 0.7 for 3 of the last 3 windows"
    )
    assert rows[regressor.name]["champion"] is None
    assert rows[regressor.name]["retirement_candidate"] is False
    assert spec.name in metadata["candidates"].value
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == RETIREMENT_CHECK and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    page = lifecycle_env.reports_dir / "portfolio" / "scorecard.html"
    assert metadata["html_report"].value == str(page)
    assert page.read_text().count('class="flag"') == 1


def test_the_gate_history_reads_each_verdict_through_its_seal(
    lifecycle_env: Settings, registered_champion: ModelRef, spec: ModelSpec
) -> None:
    """Before, the scorecard read each version's evaluation.json as it found it: a failed gate
    edited to "passed" in the artifact store counted as a pass. The history now reads through
    `registry.gate_record`: such a file counts as tampered (neither pass nor fail) and shows in
    the asset's table, metadata and page; a file evaluated before the seal is read unchecked."""
    v1 = registered_champion
    v2, v3 = register_copy(v1), register_copy(v1)
    _evaluated(lifecycle_env, v1, 0.80, passed=True)  # evaluated before verdicts were sealed
    ledger = Ledger.for_settings(lifecycle_env)
    for ref, passed in ((v2, True), (v3, False)):
        gates = [{"name": "auc_meets_minimum", "passed": passed, "actual": 0.8, "threshold": 0.7}]
        folder = lifecycle_env.reports_dir / ref.name / f"v{ref.version}"
        seal_then_write(ledger, ref.name, ref.version, {"gates": gates}, folder / "evaluation.json")
    edited = lifecycle_env.reports_dir / v3.name / f"v{v3.version}" / "evaluation.json"
    value = json.loads(edited.read_text())
    value["gates"][0]["passed"] = True  # what someone with write access to the reports does
    edited.write_text(json.dumps(value))

    versions = scorecard_sources.registered_versions(mlflow.MlflowClient(), spec.name)
    history = scorecard_sources.gate_history(lifecycle_env, ledger, versions, 5)
    assert history == scorecard_sources.GateHistory(2, 0, 0, (), (f"v{v3.version}",), 1)
    assert history.summary() == "2 passed, 0 failed, 1 tampered (1 read unchecked)"

    result = _materialize_scorecard([spec])
    metadata = result.asset_materializations_for_node("portfolio__health_scorecard")[0].metadata
    assert metadata["gates_tampered"].value == 1
    (row,) = metadata["scorecard"].value.records
    assert row.data["gates_tampered"] == 1 and row.data["tampered_versions"] == f"v{v3.version}"
    page = (lifecycle_env.reports_dir / "portfolio" / "scorecard.html").read_text()
    assert f"tampered evaluation.json: v{v3.version}" in page
