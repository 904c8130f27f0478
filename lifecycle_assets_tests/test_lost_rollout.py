"""A canary or shadow that does not serve is named in `/readyz`; its traffic is counted.

Before, a canary whose artifact failed its SHA-256 check was refused and left out, the champion
answered its share, and `/readyz` read "ready" with nothing about it: an operator believed the
canary was taking its share. Now `/readyz` (still a 200: the champion answers) and `/metadata`
name the lost role, its version and why, the `lifecycle_rollout_lost` gauge shows it, the
records routed to the lost canary are answered by the champion and counted, and the service
log says so once. The same for a shadow, tampered before start-up or deleted from the registry
while served. Real temporary registry and ledger, two versions with their own artifact files,
real `bentoml serve`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import polars as pl
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.training import fit_pipeline
from lifecycle_assets.registry.canary import set_canary
from lifecycle_assets.registry.reader import local_or_stored
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.router import canary_mask
from lifecycle_assets.spec import BUILTIN_SPECS_DIR, ModelSpec, load_spec
from lifecycle_assets_tests.conftest import register_version
from lifecycle_assets_tests.log_rows import logged_lines
from lifecycle_assets_tests.test_hot_swap import FAST_POLL, move, wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, post, sample_records, serving
from lifecycle_assets_tests.test_lost_champion import register_expected_loss


@pytest.fixture
def own_version(
    lifecycle_env: Settings, spec: ModelSpec, small_feature_table: pl.DataFrame
) -> Callable[[], ModelRef]:
    """Registers a new version with its own artifact files (tampering them leaves the
    champion intact), holding no alias."""
    table = small_feature_table
    return lambda: register_version(lifecycle_env, spec, fit_pipeline(table, spec), table)


def tamper(ref: ModelRef) -> None:
    """Append a byte to the version's skops file, as a disk fault or an intruder would."""
    source = MlflowClient().get_model_version_download_uri(ref.name, ref.version)
    skops = Path(local_or_stored(source)) / config.SKOPS_FILE
    with skops.open("ab") as handle:
        handle.write(b"x")


def lost_roles(client: httpx.Client, name: str) -> dict:
    return client.get("/readyz").json()["models"][name]["lost_roles"]


def service_log(tmp_path: Path) -> str:
    return "".join(path.read_text() for path in tmp_path.glob("serve-*.log"))


@pytest.mark.e2e
def test_a_tampered_canary_is_named_in_readyz_and_the_champion_answers_its_share(
    registered_champion: ModelRef,
    own_version: Callable[[], ModelRef],
    lifecycle_env: Settings,
    spec: ModelSpec,
    tmp_path: Path,
) -> None:
    v1, name = registered_champion, registered_champion.name
    v2 = own_version()
    set_canary(MlflowClient(), name, v2.version, 0.5, reason="test", actor="pytest")
    tamper(v2)
    records = sample_records(spec, 200)
    for index, record in enumerate(records):
        record[spec.id_column] = f"app-{index}"
    with serving(SERVICE, tmp_path, **FAST_POLL) as url, httpx.Client(base_url=url) as c:
        lost = wait_for(lambda: lost_roles(c, name), seconds=60)["canary"]
        assert (lost["role"], lost["version"], lost["weight"]) == ("canary", v2.version, 0.5)
        assert "SHA-256" in lost["reason"]
        ready = c.get("/readyz")
        assert ready.status_code == 200, "the champion answers: still ready"
        body = ready.json()
        assert (body["status"], body["lost_roles"], body["degraded"]) == (
            "degraded", {name: ["canary"]}, [],
        )  # fmt: skip
        metadata = c.get("/metadata").json()
        assert metadata["serving"]["canary"] is None
        assert metadata["lost_roles"] == {"canary": lost}

        rows = post(c, records).json()["predictions"]
        assert {(r["model_version"], r["variant"]) for r in rows} == {(v1.version, "champion")}
        rerouted = int(canary_mask([r["record_id"] for r in rows], 0.5).sum())
        assert 60 < rerouted < 140
        counter = (
            f'lifecycle_canary_rerouted_total{{canary_version="{v2.version}",'
            f'model_name="{name}"}} {float(rerouted)}'
        )
        wait_for(lambda: counter in c.get("/metrics").text, seconds=30)  # after the answers
        gauge = f'lifecycle_rollout_lost{{model_name="{name}",role="canary"}}'
        assert f"{gauge} 1.0" in c.get("/metrics").text
        answered = {r["prediction_id"] for r in rows}

        def logged() -> list[dict]:
            found = logged_lines(lifecycle_env.prediction_log_dir, name)
            return [row for row in found if row["prediction_id"] in answered]

        assert {r["model_version"] for r in wait_for(logged, seconds=30)} == {v1.version}
        assert f"LOST CANARY: {name} `canary` v{v2.version} does not serve " in service_log(
            tmp_path
        )
        assert f"champion v{v1.version} answers its 0.5 share" in service_log(tmp_path)

        def status() -> str:  # the CLI gives a busy service 1 s to answer: asked again
            out = CliRunner().invoke(main, ["status", name, "--service-url", url]).output
            return " ".join(out.split())

        wait_for(lambda: f"lost: canary v{v2.version}: IntegrityError" in status(), seconds=30)

        # Cleared through the platform: nothing is lost any more.
        cleared = CliRunner().invoke(main, ["canary", name, "--clear", "--reason", "tampered"])
        assert cleared.exit_code == 0, cleared.output
        wait_for(lambda: c.get("/readyz").json()["status"] == "ready", seconds=30)
        assert lost_roles(c, name) == {}
        assert f"{gauge} 0.0" in c.get("/metrics").text


@pytest.mark.e2e
def test_a_tampered_or_deleted_shadow_is_named_in_readyz_and_mirrors_nothing(
    registered_champion: ModelRef,
    own_version: Callable[[], ModelRef],
    spec: ModelSpec,
    tmp_path: Path,
) -> None:
    v1, name = registered_champion, registered_champion.name
    v2 = own_version()
    move(v2, config.SHADOW_ALIAS)
    tamper(v2)
    v3 = own_version()
    with serving(SERVICE, tmp_path, **FAST_POLL) as url, httpx.Client(base_url=url) as c:
        lost = wait_for(lambda: lost_roles(c, name), seconds=60)["shadow"]
        assert (lost["version"], lost["weight"]) == (v2.version, 0.0)
        assert "SHA-256" in lost["reason"]
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert (ready.json()["status"], ready.json()["lost_roles"]) == (
            "degraded",
            {name: ["shadow"]},
        )
        rows = post(c, sample_records(spec, 20)).json()["predictions"]
        assert {(r["model_version"], r["variant"]) for r in rows} == {(v1.version, "champion")}
        wait_for(lambda: c.get("/metadata").json()["shadow_skipped"] == {"lost": 1}, seconds=30)
        assert f"LOST SHADOW: {name} `shadow` v{v2.version}" in service_log(tmp_path)

        # A good shadow serves, and is then deleted in MLflow while the ledger names it.
        move(v3, config.SHADOW_ALIAS)
        wait_for(lambda: c.get("/readyz").json()["status"] == "ready", seconds=60)
        assert c.get("/metadata").json()["serving"]["shadow"]["version"] == v3.version
        MlflowClient().delete_model_version(name, v3.version)
        lost = wait_for(lambda: lost_roles(c, name), seconds=30)["shadow"]
        assert lost["version"] == v3.version
        assert lost["reason"] == (
            f"{name} `shadow` v{v3.version} was deleted from the registry: set another "
            f"(`lifecycle shadow {name} VERSION`) or `--clear` it"
        )
        assert c.get("/metadata").json()["serving"]["shadow"] is None
        gauge = f'lifecycle_rollout_lost{{model_name="{name}",role="shadow"}} 1.0'
        assert gauge in c.get("/metrics").text


@pytest.mark.e2e
def test_with_two_models_the_lost_canary_is_named_under_its_own_model_only(
    registered_champion: ModelRef,
    own_version: Callable[[], ModelRef],
    lifecycle_env: Settings,
    spec: ModelSpec,
    tmp_path: Path,
) -> None:
    """Two models served: one's tampered canary is that model's lost role, and nothing of it
    shows under, or is counted for, the other, which answers with its own champion."""
    name = registered_champion.name
    loss_champion = register_expected_loss(lifecycle_env)
    loss = load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml")
    v2 = own_version()
    set_canary(MlflowClient(), name, v2.version, 0.5, reason="test", actor="pytest")
    tamper(v2)
    with serving(SERVICE, tmp_path, **FAST_POLL) as url, httpx.Client(base_url=url) as c:
        assert wait_for(lambda: lost_roles(c, name), seconds=60)["canary"]["version"] == v2.version
        ready = c.get("/readyz").json()
        assert ready["lost_roles"] == {name: ["canary"]}
        assert ready["models"][loss.name]["lost_roles"] == {}
        assert c.get(f"/models/{loss.name}/metadata").json()["lost_roles"] == {}
        answered = c.post(
            f"/models/{loss.name}/predict", json={"records": sample_records(loss, 20)}
        )
        assert answered.status_code == 200, answered.text
        rows = answered.json()["predictions"]
        assert {(r["model_version"], r["variant"]) for r in rows} == {
            (loss_champion.version, "champion")
        }
        metrics = c.get("/metrics").text
        assert f'lifecycle_rollout_lost{{model_name="{loss.name}",role="canary"}} 0.0' in metrics
        assert f'model_name="{loss.name}"' not in "".join(
            line for line in metrics.splitlines() if line.startswith("lifecycle_canary_rerouted")
        )
