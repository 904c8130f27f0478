"""The alias commands of the `lifecycle` CLI against a real temporary MLflow registry."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.training import fit_pipeline
from lifecycle_assets.registry.ledger import default_actor
from lifecycle_assets.registry.reader import reader_for
from lifecycle_assets.spec import ModelSpec, configured_specs, default_spec
from lifecycle_assets_tests.test_ledger import register_versions


@pytest.fixture(scope="module")
def pipeline(small_feature_table: pl.DataFrame) -> Pipeline:
    return fit_pipeline(small_feature_table, default_spec())


@pytest.fixture
def two_versions(
    lifecycle_env: Settings, spec: ModelSpec, pipeline: Pipeline, small_feature_table: pl.DataFrame
) -> list[str]:
    """Versions 1 (`champion`) and 2 in the temporary registry."""
    return register_versions(2, spec, pipeline, small_feature_table)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def as_json(*args: str) -> dict | list:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("command", ["promote", "rollback", "history", "status"])
def test_every_alias_command_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "--json" in result.output


def test_promote_rollback_history_and_status(two_versions: list[str], spec: ModelSpec) -> None:
    (v1, v2), name = two_versions, spec.name

    moved = as_json("promote", name, v2, "--reason", "better auc", "--expect", v1)
    assert moved == {
        "model": name,
        "alias": config.CHAMPION_ALIAS,
        "previous": v1,
        "current": v2,
        "changed": True,
        "ended": {},
    }
    status = as_json("status", name)
    champion = status[config.CHAMPION_ALIAS]
    assert champion["version"] == v2 and champion["by"] == default_actor()
    assert champion["reason"] == "better auc" and champion["since"].endswith("+00:00")
    assert status[config.CANARY_ALIAS] is None
    every = as_json("status")  # no model named: every model of the project, by name
    assert every[name] == status and set(every) == {s.name for s in configured_specs()}

    assert as_json("rollback", name, "--actor", "oncall")["current"] == v1
    assert as_json("rollback", name, "--to", v2, "--reason", "false alarm")["current"] == v2
    assert as_json("promote", name, v2)["changed"] is False
    entries = as_json("history", name)
    assert [(e["from_version"], e["to_version"], e["kind"]) for e in entries] == [
        (None, v1, "move"),
        (v1, v2, "move"),
        (v2, v1, "rollback"),
        (v1, v2, "rollback"),
    ]
    assert entries[2]["actor"] == "oncall" and entries[3]["reason"].endswith(": false alarm")
    assert {e["state"] for e in entries} == {"COMMITTED"}

    unasked = invoke("status", name, "--service-url", "")  # '' skips the probe, as for retire
    assert unasked.exit_code == 0 and "service: not asked (no service URL given)" in unasked.output
    assert as_json("status", name, "--service-url", "")["service"]["reachable"] is False

    table = invoke("history", name).output
    assert "COMMITTED" in table and "oncall" in table
    # Not on a terminal, no cell is cut to 80 columns: the whole reason and actor are there.
    assert entries[3]["reason"] in table and entries[0]["actor"] in table, table
    assert "…" not in table, table
    assert "not in ledger" not in invoke("status", name).output


def test_errors_are_one_line_and_a_nonzero_exit(two_versions: list[str], spec: ModelSpec) -> None:
    (v1, v2), name = two_versions, spec.name
    cases = {
        ("promote", name, "99"): "has no version '99'",
        ("retire", name, "99", "--yes", "--service-url", ""): "has no version '99'",
        ("promote", name, v2, "--alias", "shadow", "--expect", "7"): "changed concurrently",
        ("promote", name, v1, "--alias", "canary"): "is the champion; it cannot also be",
        ("promote", name, v1, "--alias", "shadow"): "is the champion; it cannot also be",
        ("promote", "no_such_model", "1"): "unknown model 'no_such_model': known models are",
        ("rollback", name): "no earlier `champion`",
        ("rollback", name, "--to", v1): "already holds `champion`",
    }
    for args, message in cases.items():
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stdout == ""
        assert result.stderr.startswith("Error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert as_json("history", name)[-1]["to_version"] == v1


@pytest.mark.parametrize(
    "args",
    [
        ("history", "nosuch"),
        ("history", "nosuch", "--json"),
        ("status", "nosuch", "--service-url", "http://127.0.0.1:9"),
        ("promote", "nosuch", "1"),
        ("rollback", "nosuch"),
        ("canary", "nosuch", "1"),
        ("canary", "nosuch", "--clear"),
        ("shadow", "nosuch", "1"),
        ("retire", "nosuch", "1", "--yes", "--service-url", ""),
        ("lineage", "nosuch", "1"),
    ],
    ids=lambda args: "-".join(a for a in args if a.isalpha()),
)
def test_an_unknown_model_is_one_line_naming_the_known_ones(
    two_versions: list[str], spec: ModelSpec, args: tuple[str, ...]
) -> None:
    """A mistyped model name is an error (exit 1, one line naming the models the registry and
    the project know), never an empty answer with exit 0."""
    result = invoke(*args)
    assert result.exit_code == 1, (args, result.output)
    assert result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: unknown model 'nosuch'"), lines
    known = {s.name for s in configured_specs()} | {spec.name}
    assert all(name in lines[0] for name in known), lines[0]


def test_a_project_model_not_yet_trained_has_an_empty_history(lifecycle_env: Settings) -> None:
    """A model of the project that has no registered version yet is known: no error."""
    result = invoke("history", "expected_loss")
    assert result.exit_code == 0 and result.output.startswith("no alias changes")


def test_spec_option_takes_a_file_or_a_project_model_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lifecycle_assets.cli.app import _load
    from lifecycle_assets.spec import BUILTIN_SPECS_DIR

    monkeypatch.delenv("LIFECYCLE_SPECS", raising=False)
    assert _load(None).name == "credit_default", "the project's first model"
    assert _load("expected_loss").task == "regression"
    assert _load(BUILTIN_SPECS_DIR / "expected_loss.yaml").name == "expected_loss"
    for day in ("1999-01-01", "2099-01-01"):  # before the model's first day, in the future
        outside = CliRunner().invoke(main, ["monitor", "--spec", "credit_default", "--day", day])
        assert outside.exit_code == 2 and outside.exception is not None, outside.output
        assert f"Invalid value for --day: {day} is not a day credit_default" in outside.output
    result = CliRunner().invoke(main, ["monitor", "--spec", "churn"])
    assert result.exit_code == 2
    assert "neither a spec file nor one of the project's models" in result.output
    assert "['credit_default', 'expected_loss']" in result.output


def test_a_locked_registry_is_one_line_and_exit_1(
    two_versions: list[str], spec: ModelSpec, lifecycle_env: Settings
) -> None:
    """A promote while another process holds the registry's write lock: after SQLite's bounded
    wait, one line naming the cause and exit code 1, no traceback; `champion` unchanged."""
    (v1, v2), name = two_versions, spec.name
    database = lifecycle_env.mlflow_tracking_uri.removeprefix("sqlite:///")
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "lifecycle"), "promote", name, v2],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "locked" in lines[0], result.stderr
    assert as_json("status", name)[config.CHAMPION_ALIAS]["version"] == v1


def test_a_corrupt_ledger_is_one_line_naming_the_file(
    two_versions: list[str], spec: ModelSpec, lifecycle_env: Settings
) -> None:
    """A ledger file overwritten with garbage: every alias command stops in one line naming the
    ledger (not "the registry"), exit 1, and `champion` stays where it was."""
    (v1, v2), name = two_versions, spec.name
    path = lifecycle_env.home / config.LEDGER_DIR / config.LEDGER_FILE
    assert path.is_file()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"not a database " * 100)
    for args in (("history", name), ("promote", name, v2), ("rollback", name)):
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"the alias ledger {path} cannot be used" in lines[0], lines
    assert reader_for(lifecycle_env).resolve(name, config.CHAMPION_ALIAS).version == v1


def test_a_corrupt_dagster_instance_is_one_line_naming_it(
    lifecycle_env: Settings, tmp_path: Path
) -> None:
    """The Dagster instance's run database overwritten with garbage: `lifecycle run` stops in
    one line naming DAGSTER_HOME, exit 1, not a SQLAlchemy traceback."""
    from lifecycle_assets_tests.small_project import write_spec

    home = Path(os.environ["DAGSTER_HOME"])
    (home / "history").mkdir(parents=True, exist_ok=True)
    (home / "history" / "runs.db").write_bytes(b"not a database " * 300)
    result = CliRunner().invoke(main, ["run", "--spec", str(write_spec(tmp_path))])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: the Dagster instance in ") and str(home) in last, last
    assert "file is not a database" in last


def test_history_says_when_the_registry_holds_what_the_ledger_lost(
    two_versions: list[str], spec: ModelSpec, lifecycle_env: Settings
) -> None:
    """The ledger file deleted: `history` has nothing recorded, and says on stderr that the
    registry holds `champion` anyway, instead of reading as "never promoted"."""
    v1, name = two_versions[0], spec.name
    path = lifecycle_env.home / config.LEDGER_DIR / config.LEDGER_FILE
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    result = invoke("history", name)
    assert result.exit_code == 0 and result.stdout.startswith("no alias changes")
    assert f"note: the registry shows `champion` -> v{v1}, the ledger unset" in result.stderr
    assert "note:" not in invoke("history", name).stdout
    invoke("promote", name, v1)  # the next alias command records what the registry shows
    assert "note:" not in invoke("history", name).stderr
