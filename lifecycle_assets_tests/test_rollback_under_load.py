"""Rollback under load: `champion` moves back and forth five times while a client keeps sending.

Zero failed requests, and every answer names a version that held `champion` during the test.
The load is bounded (a fixed number of requests and a deadline) and stays on 127.0.0.1.
"""

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.aliases import move_alias, rollback
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_hot_swap import FAST_POLL, register_copy, wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, sample_records, serving

# Bounds on the sender only (it stops as soon as the swaps are done): each swap verifies and
# loads the version and proves its compiled form again, several seconds on a loaded machine.
MAX_REQUESTS = 100_000
MAX_SECONDS = 300.0
SWAP_SECONDS = 60.0


@pytest.mark.e2e
def test_rollback_back_and_forth_under_load_drops_nothing(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    v1 = registered_champion
    v2 = register_copy(v1)
    client = MlflowClient()
    records = sample_records(spec, 20)
    answers: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def keep_sending(url: str) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        with httpx.Client(base_url=url, timeout=10) as http:
            for i in range(MAX_REQUESTS):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    response = http.post("/predict", json={"records": [records[i % 20]]})
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                else:
                    answers.extend(r["model_version"] for r in response.json()["predictions"])

    with serving(SERVICE, tmp_path, **FAST_POLL) as url:
        sender = threading.Thread(target=keep_sending, args=(url,), daemon=True)
        sender.start()
        for _ in range(5):
            move_alias(client, spec.name, config.CHAMPION_ALIAS, v2.version,
                       reason="load test", actor="pytest")  # fmt: skip
            wait_for(lambda: answers and answers[-1] == v2.version, SWAP_SECONDS)
            rollback(client, spec.name, actor="pytest", reason="load test")
            wait_for(lambda: answers and answers[-1] == v1.version, SWAP_SECONDS)
        status = CliRunner().invoke(main, ["status", spec.name, "--json", "--service-url", url])
        stop.set()
        sender.join(timeout=30)

    assert not failures, failures[:5]
    assert len(answers) > 50
    assert set(answers) <= {v1.version, v2.version}
    assert {v1.version, v2.version} <= set(answers), "both versions answered"
    served = json.loads(status.output)["service"]
    assert served["reachable"] and served["serving"]["champion"]["version"] == v1.version
