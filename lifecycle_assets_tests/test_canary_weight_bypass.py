"""A canary weight edited in MLflow directly is no weight: the service routes by the ledger's.

The audit's case: a version whose gates failed was made the canary at 0.1 (with
--override-gates, kept in the ledger), then the registered model's `canary_weight` tag was
set to 1.0 in MLflow. Before, the service obeyed the tag and sent every request to that
canary, and nothing said so. Now it keeps the ledger's 0.1 and reports the disagreement in its
log, in `/metadata` and in `lifecycle status`, as a champion set outside the platform is
(test_promotion_bypass.py); a new weight through `lifecycle canary` is followed. Real
temporary registry and ledger, real `bentoml serve`.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_canary_gates import gate_refused_copy
from lifecycle_assets_tests.test_hot_swap import FAST_POLL, wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, post, sample_records, serving


def canary_share(client: httpx.Client, records: list[dict]) -> float:
    variants = []
    for start in range(0, len(records), 250):
        rows = post(client, records[start : start + 250]).json()["predictions"]
        variants += [row["variant"] for row in rows]
    return sum(v == "canary" for v in variants) / len(variants)


@pytest.mark.e2e
def test_a_weight_edited_in_mlflow_is_reported_and_not_obeyed(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    v2 = gate_refused_copy(registered_champion, lifecycle_env)
    name = v2.name
    args = ["canary", name, v2.version, "--weight", "0.1", "--override-gates"]
    assert CliRunner().invoke(main, args).exit_code == 0
    MlflowClient().set_registered_model_tag(name, config.TAG_CANARY_WEIGHT, "1.0")  # MLflow UI
    records = sample_records(spec, 1_000)
    for index, record in enumerate(records):
        record[spec.id_column] = f"app-{index}"

    with serving(SERVICE, tmp_path, **FAST_POLL) as url, httpx.Client(base_url=url) as c:
        body = wait_for(lambda: (b := c.get("/metadata").json())["serving"]["canary"] and b)
        assert body["serving"]["canary"]["version"] == v2.version
        assert body["serving"]["canary"]["weight"] == 0.1
        problem = body["canary_weight_problem"]
        assert f"v{v2.version} has weight '1.0' in the registry, but 0.1 in the ledger" in problem
        assert abs(canary_share(c, records) - 0.1) <= 0.04

        status = CliRunner().invoke(main, ["status", name, "--service-url", url])
        assert status.exit_code == 0, status.output
        line = " ".join(status.output.split())
        assert f"weight not obeyed: {name} `canary` v{v2.version} has weight '1.0'" in line
        log = (tmp_path / f"serve-{url.rsplit(':', 1)[1]}.log").read_text()
        assert "canary weight not obeyed" in log

        # A new weight through the platform is a ledger entry, and the service follows it.
        args = ["canary", name, v2.version, "--weight", "0.5", "--override-gates"]
        assert CliRunner().invoke(main, args).exit_code == 0
        wait_for(lambda: c.get("/metadata").json()["serving"]["canary"]["weight"] == 0.5)
        assert c.get("/metadata").json()["canary_weight_problem"] is None
        assert abs(canary_share(c, records) - 0.5) <= 0.06
