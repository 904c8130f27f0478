"""A small project on disk for tests that run real processes: spec, stores and one ingest.

Small enough that a training run takes seconds (a few hundred rows a day, a short window, a
small model) and gates lenient enough that every sound version passes them, so a test that
needs promotions gets them; what the test then checks is who promoted what.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import yaml

from lifecycle_assets.spec import DEFAULT_SPEC_PATH, ModelSpec, load_spec

PROJECT_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
WINDOW_DAYS = 6


def write_spec(
    folder: Path, window_days: int = WINDOW_DAYS, name: str = "small", max_iter: int = 30
) -> Path:
    """The built-in classifier, small: `window_days` days of 250 rows, `max_iter` boosting
    rounds (30)."""
    raw = yaml.safe_load(Path(DEFAULT_SPEC_PATH).read_text())
    raw["source"]["simulator"]["rows_per_day"] = 250
    raw["training"]["window_days"] = window_days
    raw["estimator"]["params"]["max_iter"] = max_iter
    raw["gates"] = {
        "min_roc_auc": 0.5,
        "max_metric_regression": 1.0,
        "max_fairness_gap": 1.0,
        "min_training_rows": 500,
        "min_rows_per_split": 50,
    }
    path = folder / f"{name}-{window_days}-{max_iter}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def small_spec(folder: Path, window_days: int = WINDOW_DAYS) -> ModelSpec:
    return load_spec(write_spec(folder, window_days))


def two_models(folder: Path, names: tuple[str, str] = ("first", "second")):
    """Two small models named `names` (`LIFECYCLE_SPECS`), every store under `folder/state`,
    runs executed by the command itself (no webserver): the state folder and the environment."""
    specs = []
    for name in names:
        path = write_spec(folder, name=name)
        path.write_text(path.read_text().replace("\nname: credit_default\n", f"\nname: {name}\n"))
        specs.append(path)
    state = folder / "state"
    env = {
        **os.environ,
        **project_env(state),
        "LIFECYCLE_SPECS": ",".join(str(spec) for spec in specs),
    }
    env.pop("LIFECYCLE_DAGSTER_URL", None)
    return state, env


def project_env(root: Path) -> dict[str, str]:
    """Every store under `root`, with the project's dagster.yaml (its pools) in DAGSTER_HOME."""
    dagster_home = root / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_DAGSTER_YAML, dagster_home / "dagster.yaml")
    return {
        "LIFECYCLE_HOME": str(root / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "LIFECYCLE_MLFLOW_ARTIFACT_ROOT": (root / "mlartifacts").as_uri(),
        "DAGSTER_HOME": str(dagster_home),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GIT_PYTHON_REFRESH": "quiet",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(root / "bentoml")),
        "BENTOML_DO_NOT_TRACK": "true",
    }


def train_first_champion(spec_path: Path) -> None:
    """One in-process `lifecycle run` of `spec_path` (the project's environment already set)
    that must promote v1: where tests that then damage or crash the project start from."""
    import dagster as dg

    from lifecycle_assets.config import Settings
    from lifecycle_assets.definitions import build_definitions
    from lifecycle_assets.lifecycle_run import ingest_window, train_and_deploy
    from lifecycle_assets.registry.tracking import configure_mlflow

    configure_mlflow(Settings.from_env())
    spec = load_spec(spec_path)
    defs = build_definitions([spec])
    instance = dg.DagsterInstance.get()
    summary = train_and_deploy(defs, spec, instance, ingest_window(defs, spec, instance))
    assert summary.promoted and summary.champion_version == "1", summary.failure


@contextlib.contextmanager
def project_with_champion(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A small project whose v1 is champion, its environment set while in the block: (the spec
    v1 was trained on, a spec that trains a new version)."""
    env = project_env(tmp_path / "project")
    first, retrain = write_spec(tmp_path, WINDOW_DAYS), write_spec(tmp_path, WINDOW_DAYS - 1)
    with mock.patch.dict(os.environ, env):
        train_first_champion(first)
        yield first, retrain
