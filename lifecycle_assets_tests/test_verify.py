"""Only a version that can serve may hold an alias: tampered, incomplete and bad compiled forms
are refused with the reason, by the CLI and the library, and skipped by a rollback."""

from __future__ import annotations

import hashlib
import tempfile
import urllib.parse
from pathlib import Path

import mlflow
import polars as pl
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.training import fit_pipeline, model_input
from lifecycle_assets.registry.aliases import AliasError, UnverifiedVersion, move_alias, rollback
from lifecycle_assets.registry.artifacts import sha256_file
from lifecycle_assets.registry.ledger import Ledger, history
from lifecycle_assets.registry.models import log_and_register
from lifecycle_assets.registry.refs import ModelRef, get_version, resolve
from lifecycle_assets.registry.verify import (
    TAG_COMPILED_PATH,
    TAG_COMPILED_SHA256,
    TAG_COMPILED_STATUS,
    TAG_INCOMPLETE,
    load_proven,
    refusal,
    verify_version,
)
from lifecycle_assets.spec import ModelSpec

CHAMPION = config.CHAMPION_ALIAS


def model_dir(ref: ModelRef) -> Path:
    """The version's model folder in the (local) artifact store."""
    uri = MlflowClient().get_model_version_download_uri(ref.name, ref.version)
    return Path(urllib.parse.urlparse(uri).path)


def register_new(settings: Settings, spec: ModelSpec, table: pl.DataFrame) -> ModelRef:
    """A second version with its own artifact files, not promoted."""
    mlflow.set_experiment(settings.mlflow_experiment)
    with mlflow.start_run():
        return log_and_register(
            fit_pipeline(table.head(3000), spec),
            spec,
            input_example=model_input(table, spec),
            version_tags={config.TAG_TRAINING_DIGEST: "other-digest"},
        )


def copy_of(ref: ModelRef, drop: tuple[str, ...] = (), **tags: str) -> ModelRef:
    """A new version of the same files, its tags changed."""
    client = MlflowClient()
    merged = {k: v for k, v in {**ref.tags, **tags}.items() if k not in drop}
    created = client.create_model_version(ref.name, ref.source, ref.run_id, tags=merged)
    return get_version(client, ref.name, str(created.version))


COMPILED_BYTES = b"a compiled form"
COMPILED_OK = {
    TAG_COMPILED_STATUS: "ok",
    TAG_COMPILED_PATH: "compiled/test_compiled.npz",
    TAG_COMPILED_SHA256: hashlib.sha256(COMPILED_BYTES).hexdigest(),
}


def with_compiled_file(ref: ModelRef) -> ModelRef:
    """A copy of `ref` whose run carries a compiled file, tagged as a proven compiled form."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test_compiled.npz"
        path.write_bytes(COMPILED_BYTES)
        MlflowClient().log_artifact(ref.run_id, str(path), "compiled")
    return copy_of(ref, **COMPILED_OK)


def promote_cli(name: str, version: str):
    return CliRunner().invoke(main, ["promote", name, version], catch_exceptions=False)


def test_registration_carries_its_tags_and_verifies(registered_champion: ModelRef) -> None:
    ref = registered_champion
    assert ref.artifact_sha256 == sha256_file(model_dir(ref) / config.SKOPS_FILE)
    assert refusal(ref.tags) is None
    assert verify_version(MlflowClient(), ref.name, ref.version).ok


def test_a_tampered_artifact_is_refused_by_promote(
    registered_champion: ModelRef,
    lifecycle_env: Settings,
    spec: ModelSpec,
    small_feature_table: pl.DataFrame,
) -> None:
    v2 = register_new(lifecycle_env, spec, small_feature_table)
    # Registration proved the load, so promote trusts the hash alone: it must still refuse.
    assert load_proven(v2.tags)
    with (model_dir(v2) / config.SKOPS_FILE).open("ab") as handle:
        handle.write(b"tampered")
    result = promote_cli(spec.name, v2.version)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "SHA-256" in lines[0] and f"v{v2.version}" in lines[0]
    client = MlflowClient()
    assert resolve(client, spec.name, CHAMPION).version == registered_champion.version
    assert all(e.to_version != v2.version for e in Ledger.default().entries(spec.name))


def test_a_missing_artifact_is_refused(
    registered_champion: ModelRef,
    lifecycle_env: Settings,
    spec: ModelSpec,
    small_feature_table: pl.DataFrame,
) -> None:
    v2 = register_new(lifecycle_env, spec, small_feature_table)
    (model_dir(v2) / config.SKOPS_FILE).unlink()
    verdict = verify_version(MlflowClient(), spec.name, v2.version)
    assert not verdict.ok and "missing" in verdict.reasons[0]


@pytest.mark.parametrize(
    ("drop", "tags", "why"),
    [
        ((config.TAG_ARTIFACT_SHA256,), {}, "incomplete"),
        ((), {TAG_INCOMPLETE: "true"}, "interrupted"),
        ((), {**COMPILED_OK, TAG_COMPILED_SHA256: "0" * 64}, "compiled form has SHA-256"),
        ((), {**COMPILED_OK, TAG_COMPILED_PATH: "compiled/absent.npz"}, "compiled form is missing"),
        ((TAG_COMPILED_SHA256,), COMPILED_OK, "without its path and SHA-256"),
    ],
)
def test_incomplete_or_mismatched_versions_never_hold_an_alias(
    registered_champion: ModelRef, drop: tuple[str, ...], tags: dict[str, str], why: str
) -> None:
    bad = copy_of(with_compiled_file(registered_champion), drop=drop, **tags)
    client = MlflowClient()
    with pytest.raises(UnverifiedVersion, match=why):
        move_alias(client, bad.name, CHAMPION, bad.version, reason="t", actor="pytest")
    with pytest.raises(UnverifiedVersion, match=why):
        move_alias(client, bad.name, config.SHADOW_ALIAS, bad.version, reason="t", actor="pytest")
    assert resolve(client, bad.name, CHAMPION).version == registered_champion.version
    assert resolve(client, bad.name, config.SHADOW_ALIAS) is None


def test_a_matching_compiled_form_verifies(registered_champion: ModelRef) -> None:
    good = with_compiled_file(registered_champion)
    assert verify_version(MlflowClient(), good.name, good.version).ok
    # Scikit-learn serves a version whose compiled form fell back, or that has none: no
    # compiled file is needed (nor checked) then.
    fallback = copy_of(good, **{TAG_COMPILED_STATUS: "fallback", TAG_COMPILED_SHA256: "0" * 64})
    assert verify_version(MlflowClient(), fallback.name, fallback.version).ok
    compiled_tags = (TAG_COMPILED_STATUS, TAG_COMPILED_PATH, TAG_COMPILED_SHA256)
    none = copy_of(registered_champion, drop=compiled_tags)
    assert verify_version(MlflowClient(), none.name, none.version).ok


def test_rollback_skips_a_version_that_no_longer_verifies(
    registered_champion: ModelRef,
    lifecycle_env: Settings,
    spec: ModelSpec,
    small_feature_table: pl.DataFrame,
) -> None:
    client = MlflowClient()
    v2 = register_new(lifecycle_env, spec, small_feature_table)
    move_alias(client, spec.name, CHAMPION, v2.version, reason="t", actor="pytest")
    with (model_dir(registered_champion) / config.SKOPS_FILE).open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(AliasError, match="no earlier") as refused:
        rollback(client, spec.name, actor="pytest")
    # Not "no earlier champion" alone, as if there had been none: which one was passed over, why.
    assert f"passed over: v{registered_champion.version}: " in str(refused.value)
    assert "SHA-256" in str(refused.value) and "nothing was changed" not in str(refused.value)
    with pytest.raises(UnverifiedVersion):
        rollback(client, spec.name, actor="pytest", to_version=registered_champion.version)
    assert resolve(client, spec.name, CHAMPION).version == v2.version


def test_rollback_says_which_holders_it_passed_over(
    registered_champion: ModelRef,
    lifecycle_env: Settings,
    spec: ModelSpec,
    small_feature_table: pl.DataFrame,
) -> None:
    """v1 -> v2 -> v3, then v2's file is tampered: `rollback` lands on v1, and says it passed
    over v2 and why (it said only `v3 -> v1`)."""
    client = MlflowClient()
    v2 = register_new(lifecycle_env, spec, small_feature_table)
    v3 = register_new(lifecycle_env, spec, small_feature_table)
    for version in (v2, v3):
        move_alias(client, spec.name, CHAMPION, version.version, reason="t", actor="pytest")
    with (model_dir(v2) / config.SKOPS_FILE).open("ab") as handle:
        handle.write(b"tampered")
    result = CliRunner().invoke(main, ["rollback", spec.name])
    assert result.exit_code == 0, result.output
    assert resolve(client, spec.name, CHAMPION).version == registered_champion.version
    assert f"passed over v{v2.version}: " in result.output and "SHA-256" in result.output
    [entry] = [e for e in history(spec.name, CHAMPION) if e.kind == "rollback"]
    assert f"passed over v{v2.version}: " in entry.reason
