"""The service follows the registry: a moved `champion` is swapped in, a tampered one refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.aliases import move_alias
from lifecycle_assets.registry.refs import ModelRef, get_version
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_http_service import SERVICE, post, sample_records, serving

FAST_POLL = {"LIFECYCLE_MODEL_SOURCE": "registry", "LIFECYCLE_REGISTRY_POLL_SECONDS": "0.5"}


def register_copy(ref: ModelRef, **tag_overrides: str) -> ModelRef:
    """A new version of the same model files, with the same tags unless overridden."""
    client = MlflowClient()
    tags = {**ref.tags, **tag_overrides}
    version = client.create_model_version(ref.name, ref.source, ref.run_id, tags=tags)
    return get_version(client, ref.name, str(version.version))


def move(ref: ModelRef, alias: str = config.CHAMPION_ALIAS) -> None:
    move_alias(MlflowClient(), ref.name, alias, ref.version, reason="test", actor="pytest")


def wait_for(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    """The first truthy value of `check()` within `seconds`; fails the test otherwise."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"not true within {seconds} s"
            return value
        time.sleep(0.1)


@pytest.mark.e2e
def test_moved_champion_is_swapped_in_and_a_tampered_one_refused(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    records = sample_records(spec, 3)
    with (
        serving(SERVICE, tmp_path, **FAST_POLL) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        assert [r["model_version"] for r in post(client, records).json()["predictions"]] == [
            "1"
        ] * 3

        v2 = register_copy(registered_champion)
        moved_at = time.monotonic()
        move(v2)

        def serving_v2() -> dict | None:
            metadata = client.get("/metadata").json()
            return metadata if metadata["serving"]["champion"]["version"] == v2.version else None

        metadata = wait_for(serving_v2)
        assert time.monotonic() - moved_at < 10
        assert metadata["model_version"] == v2.version
        assert metadata["last_swap"]["roles"] == {"champion": v2.version}
        assert metadata["refused"] == []
        rows = post(client, records).json()["predictions"]
        assert {(r["model_version"], r["variant"]) for r in rows} == {(v2.version, "champion")}

        # `bento_service` tags a version with its Bento after the promotion was followed.
        assert metadata["bento_tag"] is None
        bento_tag = "lifecycle_model:built-after-promotion"
        MlflowClient().set_model_version_tag(v2.name, v2.version, config.TAG_BENTO_TAG, bento_tag)
        wait_for(lambda: client.get("/metadata").json()["bento_tag"] == bento_tag)
        assert client.get("/metadata").json()["last_swap"]["roles"] == {"champion": v2.version}

        v3 = register_copy(registered_champion, **{config.TAG_ARTIFACT_SHA256: "0" * 64})
        # `move_alias` refuses an unverifiable version; set behind its back, as an outside
        # writer of the registry could, the service must still refuse it.
        MlflowClient().set_registered_model_alias(v3.name, config.CHAMPION_ALIAS, v3.version)

        def refusal() -> list[dict]:
            return client.get("/metadata").json()["refused"]

        refused = wait_for(refusal)
        assert [(r["role"], r["version"]) for r in refused] == [("champion", v3.version)]
        assert "IntegrityError" in refused[0]["reason"]
        # Still v2, and the refused version is not retried on every poll.
        time.sleep(1.5)
        metadata = client.get("/metadata").json()
        assert metadata["serving"]["champion"]["version"] == v2.version
        assert len(metadata["refused"]) == 1
        rows = post(client, records).json()["predictions"]
        assert {r["model_version"] for r in rows} == {v2.version}
        metrics = client.get("/metrics").text
        assert (
            'lifecycle_model_swap_failures_total{model_name="credit_default",role="champion"} 1.0'
            in metrics
        )


def test_a_model_promoted_after_start_up_joins_the_running_service(
    registered_champion: ModelRef, lifecycle_env: Settings, tmp_path: Path
) -> None:
    """The default project has two models; the service starts with the one that has a
    champion and serves the other as soon as its first version is promoted, no restart."""
    import datetime as dt

    import polars as pl

    from lifecycle_assets.data.simulator import simulate_range
    from lifecycle_assets.ml.features import feature_table
    from lifecycle_assets.spec import BUILTIN_SPECS_DIR, load_spec
    from lifecycle_assets_tests.conftest import register_champion

    loss = load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml")
    env = {"LIFECYCLE_MODEL_SOURCE": "registry", "LIFECYCLE_REGISTRY_POLL_SECONDS": "0.5"}
    with serving(SERVICE, tmp_path, **env) as url, httpx.Client(base_url=url, timeout=10) as c:
        assert set(c.get("/models").json()["models"]) == {"credit_default"}
        body = {"records": sample_records(loss, 3)}
        assert c.post("/models/expected_loss/predict", json=body).status_code == 404

        batches = simulate_range(dt.date(2026, 1, 1), 8, seed=42)
        table = pl.concat([feature_table(frame, loss) for _, frame in batches])
        register_champion(lifecycle_env, loss, table)
        wait_for(lambda: "expected_loss" in c.get("/models").json()["models"], seconds=20)
        answered = c.post("/models/expected_loss/predict", json=body)
        assert answered.status_code == 200, answered.text
        rows = answered.json()["predictions"]
        assert [r["model_version"] for r in rows] == ["1"] * 3
        assert all("probability" not in r and r["prediction"] >= 0 for r in rows)
        assert c.post("/predict", json=body).status_code == 422, "the default stays credit_default"
