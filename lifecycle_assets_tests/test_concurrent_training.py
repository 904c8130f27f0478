"""Two training runs of one model started together, in separate processes on one real Dagster
instance and MLflow registry: each promotes exactly the version it trained, or is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.lifecycle_run import ingest_window
from lifecycle_assets.registry.ledger import COMMITTED, Ledger
from lifecycle_assets.registry.refs import get_version, resolve
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets_tests.small_project import project_env, small_spec, write_spec

pytestmark = pytest.mark.e2e

ROUNDS = 5

# One child per contender; it runs one training run per round, each released by the parent
# together with the other child's, and prints what its run trained and promoted.
CHILD = r"""
import json, os, sys, time
from pathlib import Path
import dagster as dg
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.defs.jobs import training_job_name
from lifecycle_assets.run_results import refused_by_rule
from lifecycle_assets.spec import load_spec

STEPS = (names.TRAINING_SET, names.TRAINED_MODEL, names.EVALUATION_REPORT, names.CHAMPION_MODEL)
signals, spec_paths = Path(sys.argv[1]), sys.argv[2:]
instance = dg.DagsterInstance.get()
for round_, spec_path in enumerate(spec_paths):
    spec = load_spec(spec_path)
    job = build_definitions([spec]).resolve_job_def(training_job_name(spec))
    (signals / f"ready-{round_}-{os.getpid()}").touch()
    while not (signals / f"go-{round_}").exists():
        time.sleep(0.01)
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[names.key(spec.name, step) for step in STEPS],
        raise_on_error=False,
    )
    def output(step):
        node = f"{spec.name}__{step}"
        return result.output_for_node(node) if result.is_node_success(node) else None
    trained, champion = output(names.TRAINED_MODEL), output(names.CHAMPION_MODEL)
    failures = [str(e.event_specific_data.error) for e in result.get_step_failure_events()]
    print(json.dumps({
        "round": round_, "run_id": result.run_id,
        "trained": trained and trained["version"],
        "promoted": champion and champion["champion"]["version"],
        "failures": failures, "refused": refused_by_rule(result),
    }), flush=True)
"""


def _release_rounds(signals: Path, children: list[subprocess.Popen], rounds: int) -> None:
    """Start each round once every child is ready for it, so their runs really overlap."""
    for round_ in range(rounds):
        deadline = time.monotonic() + 300  # a hang guard, not a timing target
        while len(list(signals.glob(f"ready-{round_}-*"))) < len(children):
            failed = [c for c in children if c.poll() not in (None, 0)]
            assert not failed, f"a contender died before round {round_}"
            assert time.monotonic() < deadline, f"contenders not ready for round {round_}"
            time.sleep(0.05)
        (signals / f"go-{round_}").touch()


def test_concurrent_training_runs_each_promote_their_own_version_or_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = project_env(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = small_spec(tmp_path)
    configure_mlflow(Settings.from_env())
    ingest_window(build_definitions([spec]), spec, dg.DagsterInstance.get())
    # Other estimator settings each round and each contender (the same data): a new model,
    # hence a new version (two identical trainings would register one: test_same_training.py).
    specs = [
        [str(write_spec(tmp_path, max_iter=30 + 2 * r + index)) for r in range(ROUNDS)]
        for index in range(2)
    ]
    signals = tmp_path / "signals"
    signals.mkdir()
    children = []
    for index in range(2):
        with (tmp_path / f"child-{index}.log").open("w") as log:
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, str(signals), *specs[index]],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    env={**os.environ, **env},
                )
            )
    _release_rounds(signals, children, ROUNDS)
    results = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0, (tmp_path / "child-0.log").read_text()[-3000:]
        results += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(results) == 2 * ROUNDS, results

    client = MlflowClient()
    for result in results:
        if result["promoted"] is not None:
            assert result["promoted"] == result["trained"], result
        elif result["trained"] is not None:
            # Its gates were judged against a champion that another run has since replaced.
            assert any("changed concurrently" in f for f in result["failures"]), result
            # A verdict, not an error: `lifecycle run` exits 3 for it.
            assert result["refused"], result
        else:
            assert not result["refused"], result
    assert any(r["promoted"] for r in results if r["round"] == 0), results

    promoted_by = {r["run_id"]: r["promoted"] for r in results if r["promoted"]}
    entries = Ledger.default().entries(spec.name, config.CHAMPION_ALIAS, COMMITTED)
    assert entries and all(e.kind == "move" for e in entries)
    for entry in entries:
        # Each champion was moved by the run that trained it, and that run says it promoted it.
        trained_by = get_version(client, spec.name, entry.to_version).tags[
            config.TAG_DAGSTER_RUN_ID
        ]
        assert entry.dagster_run_id == trained_by
        assert promoted_by[entry.dagster_run_id] == entry.to_version
    champion = resolve(client, spec.name, config.CHAMPION_ALIAS)
    assert champion is not None and champion.version == entries[-1].to_version
    started = dg.DagsterInstance.get().get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    )
    assert not started
