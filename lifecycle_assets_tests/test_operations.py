"""Canary, shadow, retire and the Dagster operation jobs against a real temporary registry."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.defs.operations import build_operation_jobs
from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
from lifecycle_assets.registry.aliases import AliasError, move_alias
from lifecycle_assets.registry.artifacts import sha256_file
from lifecycle_assets.registry.canary import clear_canary, set_canary, set_shadow
from lifecycle_assets.registry.ledger import history
from lifecycle_assets.registry.promotions import registry_weight
from lifecycle_assets.registry.reader import reader_of
from lifecycle_assets.registry.refs import get_version, resolve
from lifecycle_assets.registry.retire import RetireRefused, retire
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_ledger import fitted_pipeline, register_versions  # noqa: F401

UNUSED_URL = "http://127.0.0.1:9"  # discard port: nothing answers


@pytest.fixture
def versions(
    lifecycle_env: Settings,
    spec: ModelSpec,
    fitted_pipeline: Pipeline,  # noqa: F811
    small_feature_table: pl.DataFrame,
) -> list[str]:
    return register_versions(3, spec, fitted_pipeline, small_feature_table)


@contextlib.contextmanager
def fake_service(name: str, version: str) -> Iterator[str]:
    """A tiny service on 127.0.0.1 whose `/models/<name>/metadata` says it serves `version`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"model_name": name, "model_version": version}).encode()
            self.send_response(200 if self.path == f"/models/{name}/metadata" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_canary_weight_set_clear_and_validation(versions: list[str], spec: ModelSpec) -> None:
    (v1, v2, _), name, client = versions, spec.name, MlflowClient()
    set_canary(client, name, v2, 0.1, reason="try", actor="pytest")
    assert resolve(client, name, config.CANARY_ALIAS).version == v2
    assert registry_weight(reader_of(client), name) == "0.1"
    assert "canary weight 0.1" in history(name, config.CANARY_ALIAS)[-1].reason
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(AliasError, match=r"\[0, 1\]"):
            set_canary(client, name, v2, bad, reason="x", actor="pytest")
    with pytest.raises(AliasError, match="champion"):
        set_canary(client, name, v1, 0.5, reason="x", actor="pytest")
    with pytest.raises(AliasError, match="champion"):
        set_shadow(client, name, v1, reason="x", actor="pytest")
    assert registry_weight(reader_of(client), name) == "0.1"
    assert clear_canary(client, name, reason="done", actor="pytest").version == v2
    assert resolve(client, name, config.CANARY_ALIAS) is None
    assert registry_weight(reader_of(client), name) is None


def test_canary_and_shadow_commands(versions: list[str], spec: ModelSpec) -> None:
    (_, v2, v3), name = versions, spec.name
    run = CliRunner().invoke
    result = run(main, ["canary", name, v2, "--weight", "0.25", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["weight"] == 0.25
    assert run(main, ["canary", name, v2, "--weight", "2"]).exit_code == 1
    assert run(main, ["shadow", name, v3]).exit_code == 0
    assert resolve(MlflowClient(), name, config.SHADOW_ALIAS).version == v3
    assert run(main, ["shadow", name, "--clear"]).exit_code == 0
    assert run(main, ["canary", name, "--clear"]).exit_code == 0
    assert resolve(MlflowClient(), name, config.CANARY_ALIAS) is None


def test_retire_refused_while_aliased_or_served(versions: list[str], spec: ModelSpec) -> None:
    (v1, v2, _), name, client = versions, spec.name, MlflowClient()
    with pytest.raises(RetireRefused, match="alias `champion`"):
        retire(client, name, v1, reason="x", actor="pytest", service_url=UNUSED_URL)
    with fake_service(name, v2) as url, pytest.raises(RetireRefused, match="the service at"):
        retire(client, name, v2, reason="x", actor="pytest", service_url=url)
    assert get_version(client, name, v2).tags.get(config.TAG_RETIRED) is None


def test_retire_archives_tags_records_and_blocks_aliases(
    versions: list[str], spec: ModelSpec, lifecycle_env: Settings
) -> None:
    (_, _, v3), name, client = versions, spec.name, MlflowClient()
    result = CliRunner().invoke(
        main, ["retire", name, v3, "--yes", "--json", "--service-url", UNUSED_URL]
    )
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    archive = lifecycle_env.home / config.ARCHIVE_DIR / name / f"v{v3}"
    assert done["archive"] == str(archive)
    manifest = json.loads((archive / config.ARCHIVE_MANIFEST).read_text())
    assert manifest["artifact_sha256"] == sha256_file(archive / config.SKOPS_FILE)
    assert manifest["artifact_sha256"] == get_version(client, name, v3).artifact_sha256
    tags = get_version(client, name, v3).tags
    assert tags[config.TAG_RETIRED] == "true" and tags[config.TAG_RETIRED_BY]
    entry = history(name)[-1]
    assert (entry.kind, entry.from_version, entry.state) == ("retire", v3, "COMMITTED")
    with pytest.raises(AliasError, match="retired"):
        move_alias(client, name, config.CHAMPION_ALIAS, v3, reason="x", actor="pytest")
    with pytest.raises(AliasError, match="already retired"):
        retire(client, name, v3, reason="x", actor="pytest", service_url=None)


def observations(result: dg.ExecuteInProcessResult, job: dg.JobDefinition) -> list[dict]:
    node = job.graph.node_defs[0].name
    return [
        {k: v.value for k, v in o.metadata.items()}
        for o in result.asset_observations_for_node(node)
    ]


def test_operation_jobs_record_observations(versions: list[str], spec: ModelSpec) -> None:
    (v1, v2, v3), name, client = versions, spec.name, MlflowClient()
    jobs = {job.name: job for job in build_operation_jobs(spec)}
    assert set(jobs) == {
        f"{name}_{op}_job" for op in ("promote", "rollback", "canary", "shadow", "retire")
    }
    instance = dg.DagsterInstance.ephemeral()
    resources = {"lifecycle": LifecycleResource(), "mlflow": MlflowResource()}

    def run(operation: str, **op_config: object) -> list[dict]:
        job = jobs[f"{name}_{operation}_job"]
        node = job.graph.node_defs[0].name
        result = job.execute_in_process(
            run_config={"ops": {node: {"config": op_config}}}, instance=instance,
            resources=resources,
        )  # fmt: skip
        assert result.success
        return observations(result, job)

    promoted = run("promote", version=v2, reason="better")
    assert promoted == [
        {"operation": "promote", "alias": "champion", "from": v1, "to": v2, "reason": "better"}
    ]
    assert history(name)[-1].actor.startswith("dagster:")
    assert run("rollback")[0]["to"] == v1
    assert run("canary", version=v3, weight=0.3)[0]["weight"] == 0.3
    assert registry_weight(reader_of(client), name) == "0.3"
    assert run("canary", clear=True)[0]["to"] == "none"
    retired = run("retire", version=v3, service_url=UNUSED_URL)[0]
    assert retired["operation"] == "retire" and retired["from"] == v3
    assert get_version(client, name, v3).tags[config.TAG_RETIRED] == "true"

    # The alias is free text in the launchpad: a typo is refused, not recorded as a new alias.
    job = jobs[f"{name}_promote_job"]
    node = job.graph.node_defs[0].name
    typo = job.execute_in_process(
        run_config={"ops": {node: {"config": {"version": v2, "alias": "champoin"}}}},
        instance=instance, resources=resources, raise_on_error=False,
    )  # fmt: skip
    (failure,) = typo.get_step_failure_events()
    assert "unknown alias 'champoin'" in failure.event_specific_data.error.to_string()
    assert "champoin" not in (MlflowClient().get_registered_model(name).aliases or {})


@pytest.mark.parametrize("decision", ["promote", "rollback"])
def test_a_canary_verdict_acts_only_on_the_canary_it_judged(
    versions: list[str], spec: ModelSpec, monkeypatch: pytest.MonkeyPatch, decision: str
) -> None:
    """The analysis judged v2 as canary; an operator set v3 as canary before the verdict was
    applied. Promoting would make the unjudged v3 champion, rolling back would clear the
    operator's new canary: neither may happen, and the action says why."""
    from lifecycle_assets.defs.assets import canary as canary_asset
    from lifecycle_assets.ml.canary_analysis import CanaryVerdict, VariantStats
    from lifecycle_assets.registry.ledger import Ledger

    (v1, v2, v3), name, client = versions, spec.name, MlflowClient()
    set_canary(client, name, v2, 0.1, reason="try v2", actor="pytest")
    judged = resolve(client, name, config.CANARY_ALIAS)
    set_canary(client, name, v3, 0.2, reason="operator: try v3 instead", actor="oncall")
    # The asset read the canary (v2) before the operator's change landed.
    monkeypatch.setattr(canary_asset, "resolve", lambda *_args: judged)

    def stats(version: str) -> VariantStats:
        return VariantStats(10, (version,), 0.0, 0.5, 1.0, 0, None, None)

    verdict = CanaryVerdict(decision, ("test",), stats(v1), stats(v2))
    action = canary_asset.apply_verdict(client, spec, verdict, "run-1", Ledger.default())
    assert action.startswith(f"nothing: the verdict on v{v2} no longer applies"), action
    assert resolve(client, name, config.CHAMPION_ALIAS).version == v1
    assert resolve(client, name, config.CANARY_ALIAS).version == v3
    assert registry_weight(reader_of(client), name) == "0.2"
