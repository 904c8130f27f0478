"""Prediction logs over real HTTP (`bentoml serve`): one log per model, nothing lost unseen.

Issue 10: with `bentoml.monitor` the last model set up received every model's rows. Here the
default two-model project is served twice, each time with interleaved traffic to both routes
starting with the other model; each model's log holds exactly its own answers, and `lifecycle
monitor` of each model counts them. Issue 13: on a real full filesystem (a 64 KB tmpfs under the
log folder) every answered prediction is either logged or counted lost in `/metrics`, `/metadata`
says the log is failing, and no torn line is left.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import mlflow
import polars as pl
import pytest
from click.testing import CliRunner

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.data import prediction_log
from lifecycle_assets.data.simulator import simulate_range
from lifecycle_assets.ml.features import feature_table
from lifecycle_assets.ml.profile import build_profile
from lifecycle_assets.ml.training import fit_pipeline, model_input, predict_scores
from lifecycle_assets.registry.aliases import move_alias
from lifecycle_assets.registry.models import log_and_register
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import ModelSpec, configured_specs
from lifecycle_assets_tests.log_rows import logged_lines
from lifecycle_assets_tests.test_hot_swap import wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, sample_records, serving

pytestmark = pytest.mark.e2e


def register_with_profile(settings: Settings, spec: ModelSpec, table: pl.DataFrame) -> ModelRef:
    """A champion as training leaves it, reference profile included (drift reads it)."""
    client = configure_mlflow(settings)
    mlflow.set_experiment(settings.mlflow_experiment)
    pipeline = fit_pipeline(table, spec)
    profile = build_profile(
        table,
        predict_scores(pipeline, table, spec),
        spec.numeric_features,
        spec.categorical_features,
    )
    with mlflow.start_run():
        mlflow.log_dict(profile.to_dict(), config.REFERENCE_PROFILE_FILE)
        ref = log_and_register(
            pipeline,
            spec,
            input_example=model_input(table, spec),
            version_tags={
                config.TAG_TRAINING_DIGEST: "test-digest",
                config.TAG_REFERENCE_PROFILE: config.REFERENCE_PROFILE_FILE,
            },
        )
    move_alias(client, spec.name, config.CHAMPION_ALIAS, ref.version, reason="test", actor="pytest")
    return ref


@pytest.fixture
def two_champions(lifecycle_env: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, ModelSpec]:
    """The default project's two models, each with a registered champion."""
    monkeypatch.delenv("LIFECYCLE_SPECS", raising=False)
    monkeypatch.delenv("LIFECYCLE_MODEL_NAMES", raising=False)
    specs = {spec.name: spec for spec in configured_specs()}
    assert sorted(specs) == ["credit_default", "expected_loss"]
    batches = simulate_range(dt.date(2026, 1, 1), 5, seed=3)
    for spec in specs.values():
        table = pl.concat([feature_table(frame, spec) for _, frame in batches])
        register_with_profile(lifecycle_env, spec, table)
    return specs


def send_interleaved(url: str, plan: list[tuple[ModelSpec, int]], day: int) -> dict[str, set]:
    """Send the plan's requests (model, records) concurrently, in its order; the prediction
    ids each model answered."""

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"/models/{spec.name}/predict",
                        json={"records": sample_records(spec, n, day=day + i)},
                    )
                    for i, (spec, n) in enumerate(plan)
                )
            )

    answered: dict[str, set] = {}
    for (spec, n), response in zip(plan, asyncio.run(send_all()), strict=True):
        assert response.status_code == 200, response.text
        rows = response.json()["predictions"]
        assert len(rows) == n and {r["model_name"] for r in rows} == {spec.name}
        answered.setdefault(spec.name, set()).update(r["prediction_id"] for r in rows)
    return answered


def metric(text: str, name: str, model: str) -> float:
    found = re.search(rf'^{name}\{{model_name="{model}"\}} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_each_model_logs_only_its_own_rows_whatever_the_order(
    two_champions: dict[str, ModelSpec], lifecycle_env: Settings, tmp_path: Path
) -> None:
    cd, el = two_champions["credit_default"], two_champions["expected_loss"]
    answered: dict[str, set] = {cd.name: set(), el.name: set()}
    # Each service start answers the other model first: with a process-global logger the
    # model set up last took every row, so both orders are needed to catch it.
    plans = [
        [(el, 3), (cd, 2), (el, 1), (cd, 4), (cd, 1), (el, 5), (cd, 3), (el, 2)],
        [(cd, 4), (el, 2), (cd, 1), (el, 3), (el, 1), (cd, 2), (el, 4), (cd, 5)],
    ]
    log_dir = lifecycle_env.prediction_log_dir
    for run, plan in enumerate(plans):
        with (
            serving(SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry") as url,
            httpx.Client(base_url=url, timeout=10) as client,
        ):
            for name, ids in send_interleaved(url, plan, day=10 * run + 1).items():
                answered[name] |= ids
            if run == 1:
                # A NaN in a nullable field is answered (or refused at the door), never logged
                # as a bare NaN token that would break the day's readers.
                record = {**sample_records(cd, 1, day=27)[0], "income": 1.5}
                body = json.dumps({"records": [record]}).replace('"income": 1.5', '"income": NaN')
                response = client.post(f"/models/{cd.name}/predict", content=body)
                assert response.status_code in (200, 422), response.text
                nan_answers = response.json().get("predictions", [])
                answered[cd.name] |= {r["prediction_id"] for r in nan_answers}
            total = sum(len(ids) for ids in answered.values())

            def all_logged(total: int = total) -> bool:
                return sum(len(logged_lines(log_dir, s.name)) for s in (cd, el)) >= total

            wait_for(all_logged)
            metrics = client.get("/metrics").text
            for spec in (cd, el):
                metadata = client.get(f"/models/{spec.name}/metadata").json()
                assert metadata["health"]["prediction_log"] == "ok"
                assert metric(metrics, "lifecycle_prediction_log_failures_total", spec.name) == 0
                assert (
                    metric(metrics, "lifecycle_prediction_log_rows_total", spec.name)
                    == (metadata["prediction_log"]["rows_written"])
                )

    for spec in (cd, el):
        logged = logged_lines(log_dir, spec.name)
        assert {row["model_name"] for row in logged} == {spec.name}
        assert sorted(row["prediction_id"] for row in logged) == sorted(answered[spec.name])
        segments = prediction_log.segment_files(log_dir, spec.name)
        assert len({p.name for p in segments}) == 2, "one segment per service process"
    for answer in nan_answers:
        (row,) = [
            r
            for r in logged_lines(log_dir, cd.name)
            if r["prediction_id"] == answer["prediction_id"]
        ]
        assert row["income"] is None
    expected = {cd.name: 2 + 4 + 1 + 3 + 4 + 1 + 2 + 5, el.name: 3 + 1 + 5 + 2 + 2 + 3 + 1 + 4}
    expected[cd.name] += len(nan_answers)
    assert {name: len(ids) for name, ids in answered.items()} == expected

    # `lifecycle monitor` of each model collects its own day: its count, nothing of the other.
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for spec in (cd, el):
        result = CliRunner().invoke(main, ["monitor", "--spec", spec.name])
        assert result.exit_code == 0, result.output
        assert f"{spec.name} {today}: {expected[spec.name]} predictions" in result.output


def test_a_full_disk_is_counted_and_shown_never_torn(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    log_dir = lifecycle_env.prediction_log_dir
    log_dir.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(log_dir)], capture_output=True
    )
    # The project's machines (and CI) run as root and can mount a small tmpfs: a real full
    # disk. Where that is impossible the test fails and says why, rather than passing unseen.
    assert mounted.returncode == 0, f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}"
    answered: set[str] = set()
    try:
        with (
            serving(SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry") as url,
            httpx.Client(base_url=url, timeout=10) as client,
        ):

            def lost() -> int:
                return client.get("/metadata").json()["prediction_log"]["rows_lost"]

            day = 1
            while lost() < 50:
                response = client.post(
                    "/predict", json={"records": sample_records(spec, 20, day=day % 28 + 1)}
                )
                assert response.status_code == 200, "answers go out whatever the log does"
                answered |= {r["prediction_id"] for r in response.json()["predictions"]}
                day += 1
                assert day < 500, "the filesystem never filled"

            def settled() -> dict[str, Any]:
                status = client.get("/metadata").json()["prediction_log"]
                done = status["rows_written"] + status["rows_lost"] == len(answered)
                return status if done else {}

            status = wait_for(settled)
            metadata = client.get("/metadata").json()
            metrics = client.get("/metrics").text
        rows_lost = status["rows_lost"]
        assert metadata["health"]["prediction_log"] == f"failing: ENOSPC, {rows_lost} rows lost"
        assert metadata["prediction_log_failures"] == rows_lost
        assert metric(metrics, "lifecycle_prediction_log_failures_total", spec.name) == rows_lost
        errors = re.search(
            rf'lifecycle_prediction_log_write_errors_total\{{error="ENOSPC",'
            rf'model_name="{spec.name}"\}} ([0-9.]+)',
            metrics,
        )
        assert errors and float(errors.group(1)) >= 1
        (segment,) = prediction_log.segment_files(log_dir, spec.name)
        data = segment.read_bytes()
        assert data.endswith(b"\n"), "no torn last line"
        logged = {prediction_log.parse_row(line)["prediction_id"] for line in data.splitlines()}
        assert len(logged) == status["rows_written"] and logged <= answered
        assert len(answered - logged) == rows_lost
    finally:
        subprocess.run(["umount", "-l", str(log_dir)], check=True)
