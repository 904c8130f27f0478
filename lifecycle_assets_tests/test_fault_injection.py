"""SIGKILL at named points of `lifecycle run` and `lifecycle promote`, then the invariants.

Modelled on Dagster's own crash-injection tests: the process under test runs for real (a
subprocess on a real Dagster instance and MLflow registry) with LIFECYCLE_CRASH_AT naming the
point where `crash_point` kills it with SIGKILL. Each scenario first checks that the crash left
something behind (else it proves nothing), then runs the next operation and asserts:

- every registered version is complete or marked incomplete, and the champion verifies;
- the registry and the ledger agree, and no ledger entry is left PENDING;
- the previous champion is still champion (or, when the alias write itself completed, the
  version it moved to, recorded as committed);
- nothing is left RUNNING in MLflow or STARTED in Dagster, and no pool slot stays held.

One project is trained once per module and restored from a snapshot before each scenario (to
the same path: the stores record absolute paths).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.crash import CRASH_AT_ENV
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.lifecycle_run import ingest_window
from lifecycle_assets.registry.ledger import PENDING, Ledger
from lifecycle_assets.registry.promotions import registry_weight
from lifecycle_assets.registry.reader import reader_of
from lifecycle_assets.registry.refs import get_version, resolve
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.registry.verdicts import recorded_verdict
from lifecycle_assets.registry.verify import is_incomplete, verify_version
from lifecycle_assets.spec import load_spec
from lifecycle_assets.storage import sha256_bytes as sha256_hex
from lifecycle_assets_tests.small_project import (
    WINDOW_DAYS,
    project_env,
    train_first_champion,
    write_spec,
)

pytestmark = pytest.mark.e2e

CLI = "import sys; from lifecycle_assets.cli import main; sys.exit(main())"
CHAMPION = config.CHAMPION_ALIAS
NAME = "credit_default"


@dataclass(frozen=True)
class Project:
    root: Path
    snapshot: Path
    env: dict[str, str]
    spec_path: Path  # the spec the champion was trained with
    retrain_spec_path: Path  # one day shorter: a new training set, so a new version


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One small project with v1 as champion, trained once, snapshotted for every scenario."""
    base = tmp_path_factory.mktemp("faults")
    root = base / "project"
    # No pooled connection: each scenario replaces the MLflow database file under this process.
    env = {**project_env(root), "MLFLOW_SQLALCHEMYSTORE_POOLCLASS": "NullPool"}
    spec_path = write_spec(base, WINDOW_DAYS)
    retrain = write_spec(base, WINDOW_DAYS - 1)
    with mock.patch.dict(os.environ, env):
        train_first_champion(spec_path)
    snapshot = base / "snapshot"
    shutil.copytree(root, snapshot)
    yield Project(root, snapshot, env, spec_path, retrain)


@pytest.fixture
def fresh(project: Project) -> Iterator[Project]:
    """The trained project as the fixture left it, with its environment applied."""
    shutil.rmtree(project.root)
    shutil.copytree(project.snapshot, project.root)
    with mock.patch.dict(os.environ, project.env):
        configure_mlflow(Settings.from_env())
        yield project


def crash(project: Project, point: str, *args: str) -> None:
    """Run `lifecycle ARGS` with a crash at `point`; it must die there, by SIGKILL."""
    env = {**os.environ, **project.env, CRASH_AT_ENV: point}
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, (
        f"`lifecycle {' '.join(args)}` did not reach {point}: exit {done.returncode}\n"
        f"{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    )


def running_mlflow_runs(client: MlflowClient) -> list[str]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")
    return [r.info.run_id for r in runs]


def started_dagster_runs(instance: dg.DagsterInstance) -> list[str]:
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    )
    return [r.dagster_run.run_id for r in records]


def next_lifecycle_run(project: Project) -> None:
    """What the next `lifecycle run` does first (its reconcile), here with nothing to ingest."""
    spec = load_spec(project.retrain_spec_path)
    ingest_window(build_definitions([spec]), spec, dg.DagsterInstance.get())


def next_alias_operation() -> None:
    """The next alias operation: re-pointing `champion` where it is (a no-op move)."""
    champion = resolve(MlflowClient(), NAME, CHAMPION)
    result = CliRunner().invoke(main, ["promote", NAME, champion.version], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def assert_invariants(champion: str) -> None:
    client = MlflowClient()
    instance = dg.DagsterInstance.get()
    assert running_mlflow_runs(client) == []
    assert started_dagster_runs(instance) == []
    assert instance.event_log_storage.get_concurrency_run_ids() == set()
    # The pool is free: a new run's training step gets its slot at once.
    pool = names.training_pool(NAME)
    claim = instance.event_log_storage.claim_concurrency_slot(pool, "probe", "probe-step")
    assert claim.is_claimed
    instance.event_log_storage.free_concurrency_slots_for_run("probe")

    versions = client.search_model_versions(f"name = '{NAME}'")
    for version in versions:
        tags = version.tags or {}
        marked = is_incomplete(tags)
        assert tags.get(config.TAG_ARTIFACT_SHA256) or marked, f"v{version.version} unmarked"
    live = resolve(client, NAME, CHAMPION)
    assert live is not None and live.version == champion
    assert verify_version(client, NAME, live.version).ok
    ledger = Ledger.default()
    assert ledger.entries(NAME, state=PENDING) == []
    aliases = client.get_registered_model(NAME).aliases
    recorded = {alias: e.to_version for alias, e in ledger.holders(NAME).items()}
    assert {a: v for a, v in recorded.items() if v is not None} == {
        a: str(v) for a, v in aliases.items()
    }


RUN_POINTS = [
    # (crash point in `lifecycle run`, champion after recovery)
    ("after-log-model", "1"),  # model logged, no version: the run is left RUNNING
    ("after-register", "1"),  # a complete version, the MLflow and Dagster runs left open
    ("alias-pending-written", "1"),  # ledger PENDING, alias not moved: aborted
    ("alias-alias-set", "2"),  # alias moved, ledger not settled: committed
]


@pytest.mark.parametrize(("point", "champion"), RUN_POINTS, ids=[p for p, _ in RUN_POINTS])
def test_lifecycle_run_killed_at(
    fresh: Project, point: str, champion: str, caplog: pytest.LogCaptureFixture
) -> None:
    crash(fresh, point, "run", "--spec", str(fresh.retrain_spec_path))
    client, instance = MlflowClient(), dg.DagsterInstance.get()
    # The crash left work half done: a Dagster run STARTED holding its pool slot, and an open
    # MLflow run (killed while training) or a PENDING ledger entry (killed while promoting).
    assert started_dagster_runs(instance)
    assert instance.event_log_storage.get_concurrency_run_ids()
    if point.startswith("alias-"):
        assert Ledger.default().entries(NAME, state=PENDING)
    else:
        assert running_mlflow_runs(client)
    next_lifecycle_run(fresh)
    assert "reconciled after a crash: " in caplog.text  # the one line a person sees
    assert_invariants(champion)


def whole_lifecycle_run(project: Project) -> None:
    """The next `lifecycle run` of the retrain spec, whole (no crash point): it exits 0."""
    env = {k: v for k, v in {**os.environ, **project.env}.items() if k != CRASH_AT_ENV}
    args = [sys.executable, "-c", CLI, "run", "--spec", str(project.retrain_spec_path)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-3000:]


def test_lifecycle_run_killed_between_sealing_and_writing_the_evaluation(fresh: Project) -> None:
    """Before, the evaluation wrote `evaluation.json` and then sealed it: killed between the
    two, the version had a file and no seal, which `promote` reads as a version evaluated
    before verdicts were recorded, unchecked (so an edited file passed). The seal now comes
    first: the seal without its file refuses the version, override or not, and so does any
    file put there since; the next run of the same training evaluates it again."""
    crash(fresh, "after-verdict-sealed", "run", "--spec", str(fresh.retrain_spec_path))
    sealed = recorded_verdict(Ledger.default(), NAME, "2")
    assert sealed is not None  # the crash left the seal of v2's evaluation behind
    path = Settings.from_env().reports_dir / NAME / "v2" / "evaluation.json"
    assert not path.exists()
    for extra in ([], ["--override-gates"]):
        result = CliRunner().invoke(main, ["promote", NAME, "2", *extra])
        assert result.exit_code == 1, result.output
        assert f"recorded sha256 {sealed.sha256}, found no file" in " ".join(result.output.split())
    path.write_text('{"gates": []}')  # what someone with write access to the reports can do
    result = CliRunner().invoke(main, ["promote", NAME, "2"])
    assert result.exit_code == 1 and "does not match the gate verdict" in result.output
    assert resolve(MlflowClient(), NAME, CHAMPION).version == "1"

    whole_lifecycle_run(fresh)
    resealed = recorded_verdict(Ledger.default(), NAME, "2")
    assert resealed.seq > sealed.seq and sha256_hex(path.read_bytes()) == resealed.sha256
    versions = MlflowClient().search_model_versions(f"name = '{NAME}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]  # evaluated again, not retrained
    assert_invariants("2")


def test_a_version_whose_run_ended_before_its_evaluation_is_refused_then_evaluated(
    fresh: Project,
) -> None:
    """Killed after registering, before evaluating: v2 has no seal and no file. `promote` took
    that for a version registered outside `lifecycle run` and moved `champion` to it with no
    gate judged and nothing said, and the next run of the same training ("v2 already holds this
    training") never evaluated it. Now `promote` refuses it unless overridden, and the next run
    evaluates it: sealed, its file written, gated, promoted."""
    crash(fresh, "after-register", "run", "--spec", str(fresh.retrain_spec_path))
    assert recorded_verdict(Ledger.default(), NAME, "2") is None
    result = CliRunner().invoke(main, ["promote", NAME, "2"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "v2 was registered by a training run that ended before its evaluation" in said
    assert "--override-gates" in said
    assert resolve(MlflowClient(), NAME, CHAMPION).version == "1"

    whole_lifecycle_run(fresh)
    sealed = recorded_verdict(Ledger.default(), NAME, "2")
    path = Settings.from_env().reports_dir / NAME / "v2" / "evaluation.json"
    assert sealed is not None and sha256_hex(path.read_bytes()) == sealed.sha256
    versions = MlflowClient().search_model_versions(f"name = '{NAME}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]  # evaluated, not retrained
    assert_invariants("2")


def test_a_version_left_half_registered_is_marked_and_never_promoted(fresh: Project) -> None:
    """What a kill between creating a version and tagging it left before registration became
    one call: a version without `artifact_sha256`. Reconcile marks it; promote refuses it."""
    client = MlflowClient()
    v1 = get_version(client, NAME, "1")
    half = client.create_model_version(NAME, v1.source, v1.run_id)
    next_lifecycle_run(fresh)
    assert is_incomplete(get_version(client, NAME, str(half.version)).tags)
    result = CliRunner().invoke(main, ["promote", NAME, str(half.version)])
    assert result.exit_code == 1 and "incomplete" in result.output
    assert_invariants("1")


PROMOTE_POINTS = [("alias-pending-written", "1"), ("alias-alias-set", "2")]


def outside_copy(tags: dict[str, str]) -> dict[str, str]:
    """A version's tags for a copy registered by hand: the copy was never evaluated, so it
    does not claim a sealed verdict (v1's would be refused as lost: it has no seal of its own)."""
    return {k: v for k, v in tags.items() if k != config.TAG_VERDICT_SEALED}


@pytest.mark.parametrize(("point", "champion"), PROMOTE_POINTS, ids=[p for p, _ in PROMOTE_POINTS])
def test_promote_killed_at(fresh: Project, point: str, champion: str) -> None:
    client = MlflowClient()
    v1 = get_version(client, NAME, "1")
    v2 = client.create_model_version(NAME, v1.source, v1.run_id, tags=outside_copy(v1.tags))
    crash(fresh, point, "promote", NAME, str(v2.version))
    assert Ledger.default().entries(NAME, state=PENDING)
    next_alias_operation()
    assert_invariants(champion)


@pytest.mark.parametrize(("point", "champion"), PROMOTE_POINTS, ids=[p for p, _ in PROMOTE_POINTS])
def test_promoting_the_canary_killed_at(fresh: Project, point: str, champion: str) -> None:
    """The champion and the end of its canary are one write: killed before it, v2 is still
    only the canary (at its weight); after it, only the champion."""
    client = MlflowClient()
    v1 = get_version(client, NAME, "1")
    copy = client.create_model_version(NAME, v1.source, v1.run_id, tags=outside_copy(v1.tags))
    v2 = str(copy.version)
    result = CliRunner().invoke(main, ["canary", NAME, v2, "--weight", "0.2"])
    assert result.exit_code == 0, result.output
    crash(fresh, point, "promote", NAME, v2)
    next_alias_operation()
    assert_invariants(champion)
    aliases = {a: str(v) for a, v in client.get_registered_model(NAME).aliases.items()}
    weight = registry_weight(reader_of(client), NAME)
    if champion == v2:
        assert aliases == {CHAMPION: v2} and weight is None
    else:
        assert aliases == {CHAMPION: "1", config.CANARY_ALIAS: v2} and weight == "0.2"
