"""The training set-up of `lifecycle run`: the registry opened before the first run (a new SQLite
store created from MLflow's schema file, else by MLflow), reconciled in a thread that imports
nothing, and its errors raised where it is awaited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets.recovery import Recovery
from lifecycle_assets.registry import mlflow_schema
from lifecycle_assets.registry.mlflow_schema import store_created
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.training_setup import SPANS, TrainingSetUp

ROOT = Path(__file__).resolve().parents[1]


def _fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Settings]:
    store = tmp_path / "fresh" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    return store, Settings.from_env()


def test_the_set_up_creates_and_reconciles_the_registry_and_records_its_span(
    lifecycle_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings = _fresh_store(tmp_path, monkeypatch)
    before = len(SPANS)
    setup = TrainingSetUp(["credit_default"], settings).start()
    assert store_created(store)  # before the first Dagster run, in the caller's thread
    recovery = setup.wait()
    assert isinstance(recovery, Recovery) and not recovery
    assert configure_mlflow(settings).get_experiment_by_name(settings.mlflow_experiment)
    assert len(SPANS) == before + 1  # the thread's reconcile, with its CPU seconds
    assert SPANS[-1].end > SPANS[-1].start and SPANS[-1].cpu > 0
    assert setup.wait() == Recovery()  # a second wait has nothing left to report


def test_a_schema_that_does_not_fit_leaves_the_store_to_mlflow_and_says_so(
    lifecycle_env: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = tmp_path / "mlflow_schema.sql"
    lines = mlflow_schema.SCHEMA_FILE.read_text().splitlines(keepends=True)
    other.write_text("-- mlflow 0.0.1 alembic 0123456789ab\n" + "".join(lines[1:]))
    monkeypatch.setattr(mlflow_schema, "SCHEMA_FILE", other)
    store, settings = _fresh_store(tmp_path, monkeypatch)
    assert TrainingSetUp(["credit_default"], settings).start().wait() == Recovery()
    assert store_created(store)
    assert "note: mlflow_schema.sql is MLflow 0.0.1's schema" in caplog.text


def test_an_error_of_the_set_up_is_raised_where_it_is_awaited(
    lifecycle_env: Settings, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    settings = lifecycle_env.replace(mlflow_tracking_uri=f"sqlite:///{blocked}/mlflow.db")
    setup = TrainingSetUp(["credit_default"], settings).start()  # the ingest would go on
    with pytest.raises(OSError, match="a-file"):
        setup.wait()


# Runs `lifecycle run`'s set-up on a fresh project after the definitions are loaded, and lists
# the modules first imported by the set-up's thread.
THREAD_IMPORTS = textwrap.dedent(
    """
    import importlib.abc, json, sys, threading
    from lifecycle_assets.definitions import build_definitions
    from lifecycle_assets.spec import configured_specs
    from lifecycle_assets.training_setup import TrainingSetUp

    class Imports(importlib.abc.MetaPathFinder):
        found = []

        def find_spec(self, name, path=None, target=None):
            if threading.current_thread().name == "lifecycle-training-setup":
                self.found.append(name)
            return None

    specs = configured_specs()
    build_definitions(specs)
    sys.meta_path.insert(0, Imports())
    TrainingSetUp([spec.name for spec in specs]).start().wait()
    print(json.dumps(Imports.found))
    """
)


def test_the_set_up_thread_imports_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LIFECYCLE_"))}
    env.update(
        LIFECYCLE_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path), PYTHONPATH=str(ROOT)
    )
    done = subprocess.run(
        [sys.executable, "-c", THREAD_IMPORTS],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []
