"""Canary routing (stable per record id), shadow scoring, and the admin token."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.canary import set_canary
from lifecycle_assets.registry.promotions import weight_problem
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.router import canary_mask, route_point
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.log_rows import logged_lines
from lifecycle_assets_tests.test_hot_swap import FAST_POLL, move, register_copy, wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, post, sample_records, serving


def test_route_point_is_stable_and_uniform() -> None:
    assert route_point("application-42") == route_point("application-42")
    points = np.array([route_point(f"id-{i}") for i in range(20_000)])
    assert ((points >= 0) & (points < 1)).all()
    assert abs(points.mean() - 0.5) < 0.01
    assert abs((points < 0.1).mean() - 0.1) < 0.01


def test_canary_mask_follows_the_weight_and_only_grows() -> None:
    ids = [uuid.uuid4().hex for _ in range(5_000)]
    assert not canary_mask(ids, 0.0).any()
    assert canary_mask(ids, 1.0).all()
    small, large = canary_mask(ids, 0.1), canary_mask(ids, 0.3)
    assert abs(small.mean() - 0.1) < 0.02
    assert (large | ~small).all(), "raising the weight never moves a record back to champion"
    assert (canary_mask(ids, 0.1) == small).all()


@pytest.mark.parametrize(("raw", "recorded"), [("0.25", 0.25), ("1", 1.0), ("0", 0.0)])
def test_weight_tag_that_matches_the_ledger_is_no_problem(raw: str, recorded: float) -> None:
    # The registry's tag is only compared with the ledger's weight (`serving/canary_weight.py`).
    assert weight_problem("m", "2", raw, recorded) is None


@pytest.mark.parametrize("raw", [None, "", "1.5", "-0.1", "nan", "ten"])
def test_weight_tag_absent_or_nonsense_is_a_problem(raw: str | None) -> None:
    problem = weight_problem("m", "2", raw, 0.25)
    assert problem is not None and "traffic follows the ledger's 0.25" in problem


@pytest.mark.e2e
def test_canary_answers_a_stable_share_and_admin_needs_the_token(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    canary = register_copy(registered_champion)
    # A canary is set with its weight, in one change (`registry/alias_rules.py`).
    set_canary(MlflowClient(), spec.name, canary.version, 0.1, reason="test", actor="pytest")
    records = sample_records(spec, 2_000)
    for index, record in enumerate(records):
        record[spec.id_column] = f"app-{index}"
    env = {**FAST_POLL, "LIFECYCLE_ADMIN_TOKEN": "s3cret"}
    with (
        serving(SERVICE, tmp_path, **env) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        assert client.post("/admin/reload").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.get("/admin/status", headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        status = client.post("/admin/reload", headers=right)
        assert status.status_code == 200, status.text
        served = status.json()["serving"]
        assert served["canary"] == {**served["canary"], "version": canary.version, "weight": 0.1}
        assert client.get("/admin/status", headers=right).status_code == 200

        variants: dict[str, str] = {}
        for start in range(0, len(records), 250):
            rows = post(client, records[start : start + 250]).json()["predictions"]
            for row in rows:
                expected = canary.version if row["variant"] == "canary" else "1"
                assert row["model_version"] == expected
                variants[row["record_id"]] = row["variant"]
        share = sum(v == "canary" for v in variants.values()) / len(variants)
        assert abs(share - 0.1) <= 0.03, share
        # A retry of the same records lands on the same models.
        again = post(client, records[:250]).json()["predictions"]
        assert all(variants[row["record_id"]] == row["variant"] for row in again)


@pytest.mark.e2e
def test_shadow_scores_are_logged_never_returned(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    shadow = register_copy(registered_champion)
    move(shadow, config.SHADOW_ALIAS)
    env = {**FAST_POLL, "LIFECYCLE_SHADOW_BUDGET_MS": "2000"}
    answered: dict[str, dict] = {}
    with (
        serving(SERVICE, tmp_path, **env) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_for(lambda: client.get("/metadata").json()["serving"]["shadow"])
        for day in range(1, 6):
            rows = post(client, sample_records(spec, 20, day=day)).json()["predictions"]
            assert {r["variant"] for r in rows} == {"champion"}
            answered.update({r["prediction_id"]: r for r in rows})
            time.sleep(0.1)

        def shadow_rows() -> list[dict]:
            logged = logged_lines(lifecycle_env.prediction_log_dir, spec.name)
            found = [row for row in logged if row["variant"] == "shadow"]
            return found if len(found) >= 100 else []

        logged = wait_for(shadow_rows, seconds=30)  # shadow scoring trails the answers
        metadata = client.get("/metadata").json()
    assert metadata["shadow_skipped"] == {}
    assert {row["shadow_of"] for row in logged} == set(answered)
    for row in logged:
        answer = answered[row["shadow_of"]]
        assert row["model_version"] == shadow.version
        assert row["prediction_id"] not in answered
        assert row["record_id"] == answer["record_id"]
        assert row["score"] == pytest.approx(answer["probability"])
