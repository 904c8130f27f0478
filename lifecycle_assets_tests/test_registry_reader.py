"""The read-only registry reader answers exactly as MlflowClient does (two models: versions,
aliases, tags, runs, artifact locations), and an alias move made through the registry-only
client still verifies: the SHA-256 alone refuses a tampered file, and a proven version is
promoted, rolled back and made canary without MLflow, SQLAlchemy or scikit-learn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import polars as pl
import pytest
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.training import fit_pipeline
from lifecycle_assets.registry.aliases import move_alias
from lifecycle_assets.registry.artifacts import load_proof, sha256_file
from lifecycle_assets.registry.mlflow_reader import MlflowReader
from lifecycle_assets.registry.reader import SqliteReader, reader_for, sqlite_path
from lifecycle_assets.registry.refs import ModelRef, filter_literal
from lifecycle_assets.registry.registry_client import SqliteRegistry, registry_client
from lifecycle_assets.registry.verify import load_proven, verify_dir, verify_version
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.conftest import register_pipeline

ROOT = Path(__file__).resolve().parents[1]


class CountingClient:
    """A real MlflowClient that lists the methods called on it."""

    def __init__(self, client: MlflowClient, calls: list[str]) -> None:
        self._client, self._calls = client, calls

    def __getattr__(self, name: str) -> object:
        self._calls.append(name)
        return getattr(self._client, name)


def test_the_reader_answers_as_mlflow_does_for_two_models(
    lifecycle_env: Settings, spec: ModelSpec, small_feature_table: pl.DataFrame
) -> None:
    other = spec.model_copy(update={"name": "other_model"})
    pipeline = fit_pipeline(small_feature_table.head(2000), spec)
    registered = [
        register_pipeline(lifecycle_env, model, pipeline, small_feature_table)
        for model in (spec, other, spec)
    ]
    client = MlflowClient()
    move_alias(
        client, other.name, config.CHALLENGER_ALIAS, registered[1].version,
        reason="test", actor="pytest",
    )  # fmt: skip
    client.set_model_version_tag(spec.name, "1", "note", "first")
    client.set_registered_model_tag(other.name, config.TAG_CANARY_WEIGHT, "0.25")
    run_id = registered[0].run_id
    client.log_param(run_id, "max_iter", "30")
    for step, value in enumerate((0.5, 0.75)):
        client.log_metric(run_id, "auc", value, step=step)
    with mlflow.start_run(run_id=run_id):
        rows = small_feature_table.head(20)
        dataset = mlflow.data.from_polars(rows, name=f"{spec.name}-train", digest="d" * 36)
        mlflow.log_input(dataset, context="train", tags={"sha256": "abc"})
    path = sqlite_path(lifecycle_env.mlflow_tracking_uri)
    assert path is not None
    direct, through_mlflow = SqliteReader(path), MlflowReader(client)
    assert isinstance(reader_for(lifecycle_env), SqliteReader)
    for name in (spec.name, other.name):
        assert direct.aliases(name) == through_mlflow.aliases(name)
        assert direct.model_state(name) == through_mlflow.model_state(name)
        versions = direct.versions(name)
        assert versions == through_mlflow.versions(name) and versions
        for ref in versions:
            mirrored = through_mlflow.version(name, ref.version)
            assert direct.version(name, ref.version) == mirrored
            assert direct.version(name, ref.version).created_ms == mirrored.created_ms
            assert direct.model_location(ref) == through_mlflow.model_location(ref)
            assert direct.run(ref.run_id) == through_mlflow.run(ref.run_id)
        for alias in (config.CHAMPION_ALIAS, config.CHALLENGER_ALIAS, config.CANARY_ALIAS, "1"):
            assert direct.resolve(name, alias) == through_mlflow.resolve(name, alias)
    assert direct.aliases(spec.name) == {config.CHAMPION_ALIAS: registered[2].version}
    assert direct.aliases(other.name) == {
        config.CHAMPION_ALIAS: "1",
        config.CHALLENGER_ALIAS: "1",
    }
    assert direct.version(spec.name, "1").tags["note"] == "first"
    logged = direct.run(run_id)
    assert logged is not None and logged.params == {"max_iter": "30"}
    assert logged.metrics == {"auc": 0.75}
    assert logged.datasets[f"{spec.name}-train"]["sha256"] == "abc"
    assert direct.aliases("no_such_model") is None and through_mlflow.aliases("nope") is None
    assert direct.model_state(other.name).tags == {config.TAG_CANARY_WEIGHT: "0.25"}
    # The watcher's poll of an MLflow server is one request: aliases and tags come together.
    calls: list[str] = []
    counted = MlflowReader(CountingClient(client, calls))
    assert counted.model_state(other.name) == direct.model_state(other.name)
    assert calls == ["get_registered_model"]
    assert direct.model_state("no_such_model") is None is through_mlflow.model_state("nope")
    assert (
        direct.version(spec.name, "99") is None and through_mlflow.version(spec.name, "99") is None
    )
    assert direct.run("0" * 32) is None and through_mlflow.run("0" * 32) is None


def test_a_proven_version_moves_through_the_registry_client_without_mlflow(
    registered_champion, lifecycle_env: Settings, spec: ModelSpec
) -> None:
    # Registration loaded the stored file and says so; the fast client is chosen.
    assert load_proven(registered_champion.tags)
    client = registry_client(lifecycle_env)
    assert isinstance(client, SqliteRegistry)
    assert verify_version(client, spec.name, registered_champion.version).ok
    copy = MlflowClient().create_model_version(
        spec.name, registered_champion.source, registered_champion.run_id,
        tags=registered_champion.tags,
    )  # fmt: skip
    moves = [
        ["promote", spec.name, str(copy.version), "--reason", "t"],
        ["canary", spec.name, registered_champion.version, "--weight", "0.2"],
        ["canary", spec.name, "--clear"],
        ["rollback", spec.name],
        ["promote", spec.name, str(copy.version)],
    ]
    code = (
        "import sys\n"
        "from lifecycle_assets.cli import main\n"
        f"for move in {moves!r}:\n"
        "    try:\n        main(move, standalone_mode=False)\n"
        "    except SystemExit:\n        pass\n"
        "print('MODULES=' + ','.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("MODULES="))
    loaded = set(line.removeprefix("MODULES=").split(","))
    assert not loaded & {"mlflow", "sqlalchemy", "alembic", "sklearn", "skops"}, result.stderr
    assert result.stdout.count("->") == len(moves), result.stdout + result.stderr
    champion = MlflowClient().get_model_version_by_alias(spec.name, config.CHAMPION_ALIAS)
    assert str(champion.version) == str(copy.version)


def test_only_a_proof_under_todays_rules_spares_the_load(tmp_path: Path) -> None:
    """Bytes that do not load, with a matching SHA-256: refused unless registration's proof
    (under today's allow-list and skops) says they loaded; a stale proof is no proof."""
    (tmp_path / config.SKOPS_FILE).write_bytes(b"not a skops file")
    sha = sha256_file(tmp_path / config.SKOPS_FILE)
    tags = {config.TAG_ARTIFACT_SHA256: sha, config.TAG_ARTIFACT_PATH: config.SKOPS_FILE}
    unproven = ModelRef("m", "1", "run", "src", tags)
    stale = ModelRef("m", "1", "run", "src", {**tags, config.TAG_ARTIFACT_LOAD_PROOF: "0" * 16})
    proven = ModelRef(
        "m", "1", "run", "src", {**tags, config.TAG_ARTIFACT_LOAD_PROOF: load_proof()}
    )
    for ref in (unproven, stale):
        verdict = verify_dir(ref, tmp_path, trust_proof=True)
        assert not verdict.ok and "does not load" in verdict.reasons[0]
    assert verify_dir(proven, tmp_path, trust_proof=True).ok
    assert not verify_dir(proven, tmp_path).ok  # the service's check always loads


def test_a_model_name_with_a_quote_is_found_through_mlflow(
    lifecycle_env: Settings, tmp_path: Path
) -> None:
    # Spec names cannot hold a quote, but MLflow's can, and the CLI reads any registered model.
    # MLflow's filter grammar has no escape: the value is taken verbatim between its quotes.
    client = MlflowClient()
    for name in ("o'brien", 'say "hi"'):
        client.create_registered_model(name)
        client.create_model_version(name, source=(tmp_path / "m").as_uri())
        assert [ref.version for ref in MlflowReader(client).versions(name)] == ["1"]
    with pytest.raises(ValueError, match="both quotes"):
        filter_literal("""it's "this" one""")
