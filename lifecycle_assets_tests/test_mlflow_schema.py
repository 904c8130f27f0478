"""The MLflow store created from the committed schema file is the one MLflow creates, and MLflow
opens it without migrating anything; a file that does not fit is refused."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pytest
import sqlalchemy
from mlflow.store.db.utils import _all_tables_exist, _get_latest_schema_revision

from lifecycle_assets.registry import mlflow_schema
from lifecycle_assets.registry.mlflow_schema import (
    SCHEMA_FILE,
    create_store,
    header,
    regenerate,
    statements,
    store_created,
)
from lifecycle_assets.registry.sqlite_alias_writer import MLFLOW_SCHEMA_HEAD


def _normalized(sql: str | None) -> tuple[str, ...] | None:
    """A statement's lines without indentation and trailing commas, sorted: MLflow writes a
    table's columns and constraints in an order that changes from one process to the next."""
    if sql is None:
        return None
    return tuple(sorted(line.strip().rstrip(",").rstrip() for line in sql.splitlines()))


def _objects(path: Path) -> set[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        return {(kind, name, table, _normalized(sql)) for kind, name, table, sql in rows}


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows; the experiments' times left out (MLflow stamps them when it opens)."""
    with closing(sqlite3.connect(path)) as db:
        tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: db.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
        rows["experiments"] = db.execute(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, workspace"
            " FROM experiments ORDER BY experiment_id"
        ).fetchall()
    return rows


def _open_with_mlflow(path: Path) -> None:
    uri = f"sqlite:///{path}"
    assert mlflow.MlflowClient(uri, uri).search_experiments()


def test_the_file_is_the_schema_of_the_installed_mlflow() -> None:
    version, revision = header()
    assert version == metadata.version("mlflow")
    # An MLflow upgrade that adds a migration fails here: run `make mlflow-schema`.
    assert revision == _get_latest_schema_revision() == MLFLOW_SCHEMA_HEAD


def test_the_committed_file_is_what_the_generator_writes_now(tmp_path: Path) -> None:
    regenerate(tmp_path / "schema.sql")
    now, committed = (tmp_path / "schema.sql").read_text(), SCHEMA_FILE.read_text()
    assert now.splitlines()[0] == committed.splitlines()[0]
    assert sorted(map(_normalized, statements(now))) == sorted(
        map(_normalized, statements(committed))
    )


def test_a_store_from_the_file_is_the_store_mlflow_creates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # both default experiments' artifact roots: ./mlruns
    by_mlflow, from_file = tmp_path / "by_mlflow.db", tmp_path / "from_file.db"
    _open_with_mlflow(by_mlflow)
    assert create_store(from_file) is None
    assert store_created(from_file)
    created = _objects(from_file)
    engine = sqlalchemy.create_engine(f"sqlite:///{from_file}")
    assert _all_tables_exist(engine)  # so MLflow will not create or migrate anything
    engine.dispose()
    _open_with_mlflow(from_file)
    assert _objects(from_file) == created == _objects(by_mlflow)
    assert _rows(from_file) == _rows(by_mlflow)
    # MLflow added its default experiment when it opened the file, as for a store it created.
    assert _rows(from_file)["experiments"] == [
        (0, "Default", str(tmp_path / "mlruns" / "0"), "active", "default")
    ]


def test_a_store_is_created_once_and_only_in_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.db"
    assert create_store(path) is None
    assert "already holds tables" in (create_store(path) or "")
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE t (x)")
    assert "already holds tables" in (create_store(other) or "")
    assert _objects(other) == {("table", "t", "t", ("CREATE TABLE t (x)",))}
    assert create_store(tmp_path / "new" / "folder" / "mlflow.db") is None  # as MLflow does
    (tmp_path / "a-file").write_text("not a folder")
    assert "no folder for" in (create_store(tmp_path / "a-file" / "mlflow.db") or "")


def test_the_schema_of_another_mlflow_version_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = tmp_path / "mlflow_schema.sql"
    lines = SCHEMA_FILE.read_text().splitlines(keepends=True)
    older.write_text("-- mlflow 0.0.1 alembic 0123456789ab\n" + "".join(lines[1:]))
    monkeypatch.setattr(mlflow_schema, "SCHEMA_FILE", older)
    path = tmp_path / "mlflow.db"
    assert "MLflow 0.0.1's schema" in (create_store(path) or "")
    assert not path.exists()
