"""The training set-up of `lifecycle run`: the registry reconciled in a thread beside the first
ingest, a new SQLite store created from MLflow's schema file (by a child process when the file
does not fit), and its errors raised where it is awaited."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets.recovery import Recovery
from lifecycle_assets.registry import mlflow_schema
from lifecycle_assets.registry.mlflow_schema import store_created as sqlite_store_created
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.training_setup import SPANS, TrainingSetUp, create_sqlite_store


def test_a_new_store_is_created_by_a_child_process(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.db"
    assert not sqlite_store_created(path)
    path.write_bytes(b"")  # an empty file (a creation killed early) is no store either
    assert not sqlite_store_created(path)
    path.unlink()
    create_sqlite_store(f"sqlite:///{path}")
    assert sqlite_store_created(path)
    # Complete: this process opens it without migrating anything.
    assert mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()


def test_the_set_up_creates_and_reconciles_the_registry_and_records_its_span(
    lifecycle_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "fresh" / "mlflow.db"
    store.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    settings = Settings.from_env()
    before = len(SPANS)
    setup = TrainingSetUp(["credit_default"], settings).start()
    recovery = setup.wait()
    assert isinstance(recovery, Recovery) and not recovery
    assert sqlite_store_created(store)
    assert configure_mlflow(settings).get_experiment_by_name(settings.mlflow_experiment)
    # Created from the schema file, in the thread: no child process, one span.
    assert len(SPANS) == before + 1
    assert SPANS[-1].end > SPANS[-1].start and SPANS[-1].cpu > 0
    assert setup.wait() == Recovery()  # a second wait has nothing left to report


def test_a_schema_that_does_not_fit_leaves_the_store_to_mlflow_in_a_child_process(
    lifecycle_env: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = tmp_path / "mlflow_schema.sql"
    lines = mlflow_schema.SCHEMA_FILE.read_text().splitlines(keepends=True)
    other.write_text("-- mlflow 0.0.1 alembic 0123456789ab\n" + "".join(lines[1:]))
    monkeypatch.setattr(mlflow_schema, "SCHEMA_FILE", other)
    store = tmp_path / "fresh" / "mlflow.db"
    store.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    settings = Settings.from_env()
    before = len(SPANS)
    TrainingSetUp(["credit_default"], settings).start().wait()
    assert sqlite_store_created(store)
    assert "note: mlflow_schema.sql is MLflow 0.0.1's schema" in caplog.text
    # The child process that created the store, then the thread: each with its CPU seconds.
    assert len(SPANS) == before + 2
    child, thread = SPANS[-2:]
    assert child.end > child.start and child.cpu > 0.1
    assert thread.start <= child.start and thread.end >= child.end and thread.cpu > 0


def test_an_error_of_the_set_up_is_raised_where_it_is_awaited(
    lifecycle_env: Settings, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    settings = lifecycle_env.replace(mlflow_tracking_uri=f"sqlite:///{blocked}/mlflow.db")
    setup = TrainingSetUp(["credit_default"], settings).start()
    with pytest.raises(RuntimeError, match="creating the MLflow store"):
        setup.wait()
