"""Real `lifecycle run`s on a project whose stored state was damaged after the fact.

A champion whose artifact was changed after registration: nothing may be promoted past it (its
numbers cannot be trusted, so no challenger can be compared against it), and the refusal must
say so in words an operator acts on: which model and version fail verification, why, and the
command that restores a verified champion; in the Dagster check and in the run's summary line,
with exit code 3 (a gate refused), not an error. A lake manifest overwritten by hand: one line
naming the file and the remedy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.defs import names
from lifecycle_assets.ml.gates import REGRESSION_GATE
from lifecycle_assets.registry.reader import local_or_stored
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets_tests.small_project import (
    project_with_champion,
)

pytestmark = pytest.mark.e2e

NAME = "credit_default"


@pytest.fixture
def trained(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A small project whose v1 is champion, and a spec that trains a new version."""
    with project_with_champion(tmp_path) as (_, retrain):
        yield tmp_path, retrain


def tamper(version: str) -> None:
    """Append a byte to the version's skops file, as a disk fault or an intruder would."""
    client = MlflowClient()
    source = client.get_model_version_download_uri(NAME, version)
    skops = Path(local_or_stored(source)) / config.SKOPS_FILE
    assert skops.is_file(), skops
    with skops.open("ab") as handle:
        handle.write(b"x")


def test_a_tampered_champion_blocks_promotion_with_a_clear_gate_reason(
    trained: tuple[Path, Path],
) -> None:
    _, retrain = trained
    tamper("1")
    result = CliRunner().invoke(main, ["run", "--spec", str(retrain)])
    output = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 3, output  # a gate refused: not an error, not a promotion
    expected = f"champion {NAME} v1 fails verification"
    remedy = f"`lifecycle rollback {NAME}`"
    assert f"not promoted: blocked by {REGRESSION_GATE}: {expected}" in output
    assert remedy in output and "model.skops" not in output and "Traceback" not in output
    assert resolve(MlflowClient(), NAME, config.CHAMPION_ALIAS).version == "1"

    # The Dagster check itself carries the same reason (what the UI shows).
    instance = dg.DagsterInstance.get()
    check = dg.AssetCheckKey(names.key(NAME, names.EVALUATION_REPORT), REGRESSION_GATE)
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
    evaluation = record.event.dagster_event.event_specific_data
    assert not evaluation.passed
    assert expected in evaluation.description and remedy in evaluation.description
    assert "sha-256" in evaluation.description.lower()


def test_a_corrupt_lake_manifest_is_one_line_naming_it(trained: tuple[Path, Path]) -> None:
    """A day's manifest overwritten by hand: `lifecycle run` stops in one line naming the file
    and the remedy, exit 1, no traceback; the remedy it names then works."""
    _, retrain = trained
    manifests = Path(os.environ["LIFECYCLE_HOME"]) / "lake" / NAME / "raw" / "manifests"
    damaged = sorted(manifests.glob("*.json"))[-1]
    damaged.write_text("{garbage")
    result = CliRunner().invoke(main, ["run", "--spec", str(retrain)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    last = " ".join(result.output.split()).split("Error: ")[-1]
    assert last.startswith(f"the stored file {damaged} is corrupt"), last
    damaged.unlink()
    again = CliRunner().invoke(main, ["run", "--refresh", "--spec", str(retrain)])
    assert again.exit_code == 0, again.output


def test_an_audit_of_a_corrupt_manifest_is_one_line_naming_it(trained: tuple[Path, Path]) -> None:
    """`lineage` walks the lake: a features manifest overwritten by hand ends it in one line
    naming the file, exit 1, no traceback."""
    manifests = Path(os.environ["LIFECYCLE_HOME"]) / "lake" / NAME / "features" / "manifests"
    damaged = sorted(manifests.glob("*.json"))[0]
    damaged.write_text("{garbage")
    result = CliRunner().invoke(main, ["lineage", NAME, "1"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the stored file {damaged} is corrupt" in lines[0], lines
