"""The direct SQLite alias writer writes exactly what MlflowClient writes: the same alias moves
done through MlflowClient on a real MLflow registry and through the writer on a copy leave the
same rows, MLflow reads the writer's rows back, both refuse the same bad moves, and a file at
another schema revision makes the writer refuse and the CLI fall back to MLflow, saying so."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.db.utils import _get_latest_schema_revision

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.registry import canary, sqlite_alias_writer
from lifecycle_assets.registry.aliases import move_alias, remove_alias, rollback
from lifecycle_assets.registry.changes import MlflowWriter, RegistryChange
from lifecycle_assets.registry.ledger import AliasError, Ledger
from lifecycle_assets.registry.reader import SqliteReader, sqlite_path
from lifecycle_assets.registry.recovery import mark_incomplete_versions
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.registry_client import SqliteRegistry, registry_client
from lifecycle_assets.registry.sqlite_alias_writer import (
    MLFLOW_SCHEMA_HEAD,
    RegistryRefused,
    SchemaRefused,
    SqliteAliasWriter,
)
from lifecycle_assets.registry.verify import TAG_INCOMPLETE

# Every table an alias move may touch, and the ones it must leave alone.
TABLES = (
    "registered_model_aliases",
    "model_version_tags",
    "registered_model_tags",
    "registered_models",
    "model_versions",
)
ROOT = Path(__file__).resolve().parents[1]
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the affected tables; a move's time stamp (`<alias>_since`) as its shape."""
    with sqlite3.connect(path) as connection:
        rows = {t: sorted(connection.execute(f"select * from {t}").fetchall()) for t in TABLES}
        columns = [c[1] for c in connection.execute("pragma table_info(model_version_tags)")]
    key, value = columns.index("key"), columns.index("value")
    stamped = []
    for row in rows["model_version_tags"]:
        if row[key].endswith("_since"):
            assert ISO_TIME.match(row[value]), row
            row = (*row[:value], "<time>", *row[value + 1 :])
        stamped.append(row)
    return {**rows, "model_version_tags": sorted(stamped)}


def _copy_version(champion: ModelRef) -> None:
    """A new version of the champion's files (it verifies as the champion does)."""
    MlflowClient().create_model_version(
        champion.name, champion.source, champion.run_id, tags=champion.tags
    )


def _copies(settings: Settings, champion: ModelRef, tmp_path: Path) -> tuple[Path, Path]:
    """Two more versions of the champion's files, then a copy of the registry file."""
    _copy_version(champion)
    _copy_version(champion)
    MlflowClient().set_registered_model_tag(champion.name, "owner", "risk-team")
    path = sqlite_path(settings.mlflow_tracking_uri)
    assert path is not None
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    return path, copy


def _moves(client: Any, name: str, ledger: Ledger) -> list[str]:
    """The CLI's alias moves, and refused ones; what each refusal said."""
    audit = {"actor": "pytest", "ledger": ledger}
    move_alias(client, name, config.CHAMPION_ALIAS, "2", reason="r", expected_version="1", **audit)
    canary.set_canary(client, name, "3", 0.25, reason="c", **audit)
    canary.set_canary(client, name, "3", 0.5, reason="weight only", **audit)
    canary.set_shadow(client, name, "1", reason="s", **audit)
    rollback(client, name, reason="bad", **audit)
    canary.clear_canary(client, name, reason="done", **audit)
    canary.clear_shadow(client, name, reason="done", **audit)
    remove_alias(client, name, config.CHALLENGER_ALIAS, reason="never set", **audit)
    refusals = []
    for bad in ("99", "x"):
        with pytest.raises(AliasError) as refused:
            move_alias(client, name, config.CHALLENGER_ALIAS, bad, reason="r", **audit)
        refusals.append(str(refused.value))
    return refusals


def _ledger_rows(ledger: Ledger, name: str) -> list[tuple[Any, ...]]:
    return [
        (e.alias, e.from_version, e.to_version, e.kind, e.reason, e.state)
        for e in ledger.entries(name)
    ]


def test_the_writer_is_pinned_to_the_schema_mlflow_creates(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    assert _get_latest_schema_revision() == MLFLOW_SCHEMA_HEAD
    path = sqlite_path(lifecycle_env.mlflow_tracking_uri)
    assert path is not None
    assert SqliteReader(path).schema_revision() == MLFLOW_SCHEMA_HEAD
    SqliteAliasWriter(path)  # accepted: the file MLflow itself created


def test_the_writer_leaves_the_rows_mlflowclient_leaves(
    registered_champion: ModelRef, lifecycle_env: Settings, tmp_path: Path
) -> None:
    name = registered_champion.name
    original, copy = _copies(lifecycle_env, registered_champion, tmp_path)
    assert _rows(original) == _rows(copy)
    through_mlflow, direct = Ledger(tmp_path / "a" / "ledger.db"), Ledger(tmp_path / "b" / "l.db")
    refused_by_mlflow = _moves(MlflowClient(), name, through_mlflow)
    settings = lifecycle_env.model_copy(update={"mlflow_tracking_uri": f"sqlite:///{copy}"})
    notes: list[str] = []
    client = registry_client(settings, on_fallback=notes.append)
    assert isinstance(client, SqliteRegistry) and notes == []
    refused_directly = _moves(client, name, direct)
    assert client._full is None  # MLflow was never needed
    assert refused_directly == refused_by_mlflow
    after = _rows(copy)
    assert after == _rows(original)
    assert after["registered_model_aliases"]  # the moves did write: champion back on v1
    assert _ledger_rows(direct, name) == _ledger_rows(through_mlflow, name)
    # MLflow reads what the writer wrote.
    reread = MlflowClient(f"sqlite:///{copy}", f"sqlite:///{copy}")
    assert str(reread.get_model_version_by_alias(name, config.CHAMPION_ALIAS).version) == "1"
    model = reread.get_registered_model(name)
    assert model.aliases == {config.CHAMPION_ALIAS: 1}
    assert config.TAG_CANARY_WEIGHT not in model.tags and model.tags["owner"] == "risk-team"
    assert reread.get_model_version(name, "2").tags["champion_previous_version"] == "1"
    assert reread.get_model_version(name, "3").tags["canary_reason"] == "canary weight 0.25: c"


def test_a_canary_and_its_weight_are_one_write(
    registered_champion: ModelRef, lifecycle_env: Settings, tmp_path: Path
) -> None:
    """A refused tag aborts the alias with it: nothing of the change is written."""
    _, copy = _copies(lifecycle_env, registered_champion, tmp_path)
    before = _rows(copy)
    change = RegistryChange(
        registered_champion.name,
        aliases={config.CANARY_ALIAS: "3"},
        version_tags={"3": {"canary_by": "pytest"}},
        model_tags={config.TAG_CANARY_WEIGHT: "0.5"},
    )
    writer = SqliteAliasWriter(copy)
    with pytest.raises(RegistryRefused):
        writer.apply(RegistryChange(change.model, change.aliases, {"9": {"k": "v"}}))
    assert _rows(copy) == before
    writer.apply(change)
    reread = MlflowClient(f"sqlite:///{copy}", f"sqlite:///{copy}")
    assert str(reread.get_model_version_by_alias(change.model, config.CANARY_ALIAS).version) == "3"
    assert reread.get_registered_model(change.model).tags[config.TAG_CANARY_WEIGHT] == "0.5"


@pytest.mark.parametrize(
    "change",
    [
        RegistryChange("no_such_model", aliases={"champion": "1"}),
        RegistryChange("credit_default", aliases={"champion": "42"}),
        RegistryChange("credit_default", aliases={"latest": "1"}),
        RegistryChange("credit_default", aliases={"V2": "1"}),
        RegistryChange("credit_default", aliases={"bad alias": "1"}),
        RegistryChange("credit_default", version_tags={"1": {"../k": "v"}}),
        RegistryChange("credit_default", model_tags={"k": "v" * 100_001}),
    ],
    ids=["model", "version", "latest", "version-like", "space", "tag-key", "tag-length"],
)
def test_the_writer_refuses_what_mlflow_refuses(
    registered_champion: ModelRef, lifecycle_env: Settings, change: RegistryChange
) -> None:
    assert registered_champion.name == "credit_default"
    path = sqlite_path(lifecycle_env.mlflow_tracking_uri)
    assert path is not None
    before = _rows(path)
    with pytest.raises(MlflowException):
        MlflowWriter(MlflowClient()).apply(change)
    with pytest.raises(RegistryRefused):
        SqliteAliasWriter(path).apply(change)
    assert _rows(path) == before


def test_another_schema_revision_makes_the_cli_fall_back_and_say_so(
    registered_champion: ModelRef, lifecycle_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer pinned to another revision (as after an MLflow upgrade) refuses the file; the
    move still happens, through MlflowClient, and stderr says why."""
    name = registered_champion.name
    path = sqlite_path(lifecycle_env.mlflow_tracking_uri)
    assert path is not None
    _copy_version(registered_champion)
    monkeypatch.setattr(sqlite_alias_writer, "MLFLOW_SCHEMA_HEAD", "0123456789ab")
    with pytest.raises(SchemaRefused, match=MLFLOW_SCHEMA_HEAD):
        SqliteAliasWriter(path)
    notes: list[str] = []
    assert isinstance(registry_client(lifecycle_env, on_fallback=notes.append), MlflowClient)
    assert len(notes) == 1 and "0123456789ab" in notes[0]
    result = CliRunner().invoke(main, ["promote", name, "2", "--json"])
    assert result.exit_code == 0, result.output
    assert "alias moves go through MLflow" in result.stderr
    assert '"current": "2"' in result.stdout and "note:" not in result.stdout
    assert (
        str(MlflowClient().get_model_version_by_alias(name, config.CHAMPION_ALIAS).version) == "2"
    )


def test_an_older_file_is_refused_by_the_writer_and_named_by_mlflow(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    """A file at an older revision: the writer refuses it, the CLI says it falls back, and
    MLflow's own check (in a fresh process, as a user runs it) refuses the file in one line;
    the alias stays where it was."""
    name = registered_champion.name
    path = sqlite_path(lifecycle_env.mlflow_tracking_uri)
    assert path is not None
    _copy_version(registered_champion)
    with sqlite3.connect(path) as connection:
        connection.execute("update alembic_version set version_num = '0000older000'")
    with pytest.raises(SchemaRefused):
        SqliteAliasWriter(path)
    code = "from lifecycle_assets.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "promote", name, "2"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0000older000" in result.stderr and "alias moves go through MLflow" in result.stderr
    assert "Traceback" not in result.stderr
    assert SqliteReader(path).aliases(name) == {config.CHAMPION_ALIAS: "1"}


def test_recovery_marks_a_half_registered_version_through_the_writer(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    """What a crash left without `artifact_sha256` is tagged incomplete by the direct writer
    (no MLflow opened), and MLflow reads the mark."""
    name = registered_champion.name
    half = MlflowClient().create_model_version(
        name, registered_champion.source, registered_champion.run_id
    )
    client = registry_client(lifecycle_env)
    assert isinstance(client, SqliteRegistry)
    assert mark_incomplete_versions(client, name) == [str(half.version)]
    assert MlflowClient().get_model_version(name, half.version).tags[TAG_INCOMPLETE] == "true"
    assert client._full is None
