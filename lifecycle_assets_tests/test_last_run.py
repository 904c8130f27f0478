"""Two `lifecycle run` processes of one model at once (a scheduled run and a manual one): each
reports its own summary, and `last_run.json` is one whole run's, naming that run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.lifecycle_run import EXIT_CODES
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import load_spec
from lifecycle_assets_tests.small_project import project_env, write_spec

pytestmark = pytest.mark.e2e

LIFECYCLE = str(Path(sys.executable).with_name("lifecycle"))


def _printed(console: str, label: str) -> Path:
    """The path a `lifecycle run` console names on its `<label>: ` line."""
    found = re.findall(rf"^{label}: (\S+)$", console, flags=re.MULTILINE)
    assert len(found) == 1, console[-3000:]
    return Path(found[0])


def test_two_concurrent_runs_each_report_their_own_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = project_env(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # The window ingested once, so both runs go straight to training (each its own estimator
    # setting: each trains a new version).
    specs = [write_spec(tmp_path, max_iter=30 + index) for index in range(2)]
    spec = load_spec(specs[0])
    configure_mlflow(Settings.from_env())
    from lifecycle_assets.lifecycle_run import ingest_window

    ingest_window(build_definitions([spec]), spec, dg.DagsterInstance.get())

    children = [
        subprocess.Popen(
            [LIFECYCLE, "run", "--spec", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env, "COLUMNS": "400"},
        )
        for path in specs
    ]
    runs = []
    for child in children:
        console, _ = child.communicate(timeout=600)
        assert child.returncode in (0, 3), console[-3000:]
        log = _printed(console, "run log")
        runs.append((child.returncode, log.stem, _printed(console, "summary")))

    assert runs[0][1] != runs[1][1], "two runs, two training run ids"
    for code, run_id, path in runs:
        summary = json.loads(path.read_text())
        # The summary a run names is its own, whatever the other run wrote since.
        assert summary["training_run_id"] == run_id, (path, summary["training_run_id"], run_id)
        assert EXIT_CODES[summary["outcome"]] == summary["exit_code"] == code
        assert summary["model_name"] == spec.name

    last = json.loads((Settings.from_env().reports_dir / spec.name / "last_run.json").read_text())
    own = {run_id: json.loads(path.read_text()) for _, run_id, path in runs}
    # One whole run's summary, naming that run: the one that finished last.
    assert last == own[last["training_run_id"]]
    assert last["finished_at"] == max(s["finished_at"] for s in own.values())
