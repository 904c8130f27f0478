"""Real `lifecycle run`s on a project whose lake was damaged after the fact.

The lake names every object by its SHA-256, so damage is detectable; these tests hold the run
to noticing it: a raw batch deleted or altered is reported by name and restored from the
source (the simulator gives the same bytes), an altered one kept in quarantine; a source that
cannot give the bytes back refuses the window in one line; a deleted features file is rebuilt
from its verified raw batch. The champion's lineage then points at verified batches only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dagster as dg
import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.lifecycle_run import IngestOutcome, train_and_deploy
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets.spec import DEFAULT_SPEC_PATH, load_spec
from lifecycle_assets_tests.small_project import (
    WINDOW_DAYS,
    project_env,
    project_with_champion,
    write_spec,
)

pytestmark = pytest.mark.e2e

NAME = "credit_default"


@pytest.fixture
def trained(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A small project whose v1 is champion, and a spec that trains a new version."""
    with project_with_champion(tmp_path) as specs:
        yield specs


def lake() -> Path:
    return Path(os.environ["LIFECYCLE_HOME"]) / "lake" / NAME


def manifest(kind: str, day: str) -> dict:
    return json.loads((lake() / kind / "manifests" / f"{day}.json").read_text())


def last_day() -> str:
    return sorted(p.stem for p in (lake() / "raw" / "manifests").glob("*.json"))[-1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, " ".join(result.output.split())  # the console wraps long lines


def lineage_ok(version: str) -> None:
    """`lifecycle lineage` of the version walks to raw batches that all verify."""
    result = CliRunner().invoke(main, ["lineage", NAME, version])
    assert result.exit_code == 0, result.output
    nodes = json.loads(result.stdout)["nodes"]
    raws = [n for n in nodes if n["kind"] == "raw_batch"]
    assert raws and all(n["status"] == "ok" for n in raws), raws


def test_a_deleted_raw_day_is_restored_from_the_source_and_verified(
    trained: tuple[Path, Path],
) -> None:
    _, retrain = trained
    day = last_day()
    record = manifest("raw", day)
    Path(record["path"]).unlink()
    code, output = run("--spec", str(retrain))
    assert code == 0, output
    assert f"{NAME} raw batch {day} missing: {record['path']}" in output
    assert f"manifest SHA-256 {record['sha256'][:12]}, found no file" in output
    assert "restored from the source, SHA-256 verified" in output
    assert sha256(Path(record["path"])) == record["sha256"]
    assert manifest("raw", day) == record  # the same batch, not a new ingest
    report = Path(os.environ["LIFECYCLE_HOME"]) / "quarantine" / NAME / "damaged" / day
    kept = json.loads((report / f"raw-{record['sha256']}.report.json").read_text())
    assert kept["problem"] == "missing" and kept["resolution"] == "restored"
    champion = resolve(MlflowClient(), NAME, config.CHAMPION_ALIAS)
    assert champion.version == "2"
    lineage_ok("2")


def test_an_altered_raw_day_is_quarantined_and_restored(trained: tuple[Path, Path]) -> None:
    first, _ = trained
    day = last_day()
    record = manifest("raw", day)
    path = Path(record["path"])
    altered = path.read_bytes() + b"x"
    path.write_bytes(altered)
    code, output = run("--spec", str(first))
    assert code == 0, output  # the same training set as v1's: nothing changed
    actual = hashlib.sha256(altered).hexdigest()
    moved = lake().parents[1] / "quarantine" / NAME / "damaged" / day / f"raw-{actual}.parquet"
    assert f"{NAME} raw batch {day} altered: {path}" in output
    assert f"found SHA-256 {actual[:12]}); moved to {moved}" in output
    assert moved.read_bytes() == altered  # kept, not deleted
    assert sha256(path) == record["sha256"]
    lineage_ok("1")


def test_a_deleted_features_file_is_rebuilt_and_reported(trained: tuple[Path, Path]) -> None:
    _, retrain = trained
    day = last_day()
    entry = manifest("features", day)
    Path(entry["path"]).unlink()
    code, output = run("--spec", str(retrain))
    assert code == 0, output
    assert f"{NAME} features file {day} missing: {entry['path']}" in output
    assert f"rebuilt features of {day} (features file missing)" in output
    assert sha256(Path(entry["path"])) == entry["sha256"]
    assert resolve(MlflowClient(), NAME, config.CHAMPION_ALIAS).version == "2"
    lineage_ok("2")


def test_the_training_run_alone_rebuilds_a_deleted_features_file(
    trained: tuple[Path, Path],
) -> None:
    """The training job as a schedule or the UI runs it, without `lifecycle run`'s ingest."""
    first, _ = trained
    day = last_day()
    entry = manifest("features", day)
    Path(entry["path"]).unlink()
    spec = load_spec(first)
    summary = train_and_deploy(
        build_definitions([spec]), spec, dg.DagsterInstance.get(), IngestOutcome()
    )
    assert summary.failure and summary.failure.startswith("nothing changed"), summary.failure
    assert sha256(Path(entry["path"])) == entry["sha256"]
    instance = dg.DagsterInstance.get()
    event = instance.get_latest_materialization_event(names.key(NAME, names.TRAINING_SET))
    check = event.asset_materialization.metadata["lake_check"].value
    assert check["features_rebuilt"] == {day: "features file missing"}, check


def csv_project(folder: Path, days: list[dt.date]) -> tuple[Path, Path]:
    """The built-in classifier on a CSV file reached by a `file://` URL: like any URL source,
    its bytes are not hashed into the fingerprint, so they can change unnoticed."""
    data = folder / "loans.csv"
    frames = [simulate_day(day, seed=7, rows_per_day=250) for day in days]
    pl.concat(frames).write_csv(data)
    raw = yaml.safe_load(Path(DEFAULT_SPEC_PATH).read_text())
    raw["source"] = {"uri": data.as_uri(), "format": "csv"}
    raw["start_date"], raw["end_date"] = days[0].isoformat(), days[-1].isoformat()
    raw["training"]["window_days"] = len(days)
    raw["estimator"]["params"]["max_iter"] = 30
    raw["gates"] = yaml.safe_load(write_spec(folder).read_text())["gates"]
    spec = folder / "csv.yaml"
    spec.write_text(yaml.safe_dump(raw))
    return spec, data


def test_a_raw_day_the_source_cannot_give_back_refuses_the_window(tmp_path: Path) -> None:
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=n) for n in range(WINDOW_DAYS)]
    spec, data = csv_project(tmp_path, days)
    with mock.patch.dict(os.environ, project_env(tmp_path / "project")):
        code, output = run("--spec", str(spec))
        assert code == 0, output
        day = days[-1].isoformat()
        record = manifest("raw", day)
        Path(record["path"]).unlink()
        rows = pl.read_csv(data, infer_schema=False)
        rows = rows.with_columns(pl.col("age").str.replace(r"\.\d+$", ".5"))  # other bytes
        rows.write_csv(data)
        code, output = run("--spec", str(spec))
        assert code == 3, output
        assert (
            f"not promoted: raw batch {day} of {NAME} is missing ({record['path']}, manifest "
            f"SHA-256 {record['sha256'][:12]}) and the source cannot give it back: it now gives "
            "SHA-256 "
        ) in output
        assert "restore the file from a backup, or run `lifecycle run --refresh`" in output
        assert "Traceback" not in output
        assert manifest("raw", day) == record  # nothing changed: the next run refuses again
        assert resolve(MlflowClient(), NAME, config.CHAMPION_ALIAS).version == "1"
        code, output = run("--refresh", "--spec", str(spec))  # the remedy it names
        assert code == 0, output
        assert manifest("raw", day)["sha256"] != record["sha256"]
