"""A new MLflow SQLite store created from MLflow's own schema, without importing MLflow.

Why: MLflow creates a new SQLite store by building its first tables and then replaying every
alembic migration since 2019 (about 1.6 s of CPU, plus 1.3 s to import MLflow), and a child
process did that for each new project beside the first ingest. `mlflow_schema.sql` holds what
that leaves in the file (every table, index and trigger, the `alembic_version` row and the rows
migrations insert), dumped from a store MLflow itself created (`python -m
lifecycle_assets.registry.mlflow_schema`, `make mlflow-schema`): executing it in one
transaction gives the same file in milliseconds. MLflow opens such a file as any store of its
head revision: it migrates nothing and creates its default experiment itself, as it does for a
store it just migrated. `test_mlflow_schema` proves the file equals what MLflow creates and
fails when an upgrade changes MLflow's head.

Guarded: the file is used only when the installed MLflow is the version it was dumped from and
the database is new (no table yet, checked inside the transaction); any other case returns
False and the caller lets MLflow create the store.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from contextlib import closing
from importlib import metadata
from pathlib import Path

from lifecycle_assets import sqlite_schema
from lifecycle_assets.registry.reader import sqlite_path
from lifecycle_assets.sqlite_schema import create_if_empty, statements

SCHEMA_FILE = Path(__file__).with_name("mlflow_schema.sql")
# The first line of the file: `-- mlflow <version> alembic <revision>`.
HEADER = "-- mlflow {version} alembic {revision}"


def header() -> tuple[str, str]:
    """The MLflow version and alembic revision the committed schema was dumped from."""
    with SCHEMA_FILE.open() as schema:
        _, _, version, _, revision = schema.readline().split()
    return version, revision


def usable() -> str | None:
    """Why the schema file cannot create a store for the installed MLflow; None when it can."""
    try:
        installed = metadata.version("mlflow")
    except metadata.PackageNotFoundError:
        return "MLflow is not installed"
    version, _ = header()
    if installed != version:
        return f"{SCHEMA_FILE.name} is MLflow {version}'s schema, MLflow {installed} is installed"
    return None


def store_created(path: Path) -> bool:
    """Whether MLflow's store at `path` exists (its alembic revision is stamped), read without
    SQLAlchemy or alembic."""
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM alembic_version").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def create_store(path: Path) -> str | None:
    """Create the MLflow store at `path` from the schema file, in one transaction.

    None when it did, else why not: the file already holds tables (another process created it,
    or is creating it), its folder cannot be made, or the schema is not the installed MLflow's.
    MLflow decides then.
    """
    refused = usable()
    if refused is not None:
        return refused
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as MLflow does for a SQLite store
    except OSError as error:
        return f"no folder for {path}: {error}"
    text = SCHEMA_FILE.read_text()
    script = [(statement, ()) for statement in statements(text, SCHEMA_FILE.name)]
    if not create_if_empty(path, script):
        return f"{path} already holds tables"
    return None


def create_if_new(tracking_uri: str) -> None:
    """Create the SQLite store `tracking_uri` names from the schema file if it does not exist
    yet; when the file cannot, say so (MLflow then creates and migrates the store itself)."""
    path = sqlite_path(tracking_uri)
    if path is None or store_created(path):
        return
    refused = create_store(path)
    if refused is not None and not store_created(path):
        logging.getLogger("lifecycle").warning(
            "note: %s: MLflow creates and migrates the store itself (slower)", refused
        )


def dump(path: Path, version: str, revision: str) -> str:
    """The schema file's text for the store at `path`."""
    return sqlite_schema.dump(
        path,
        [
            HEADER.format(version=version, revision=revision)[3:],
            "Written by `python -m lifecycle_assets.registry.mlflow_schema`: do not edit.",
        ],
    )


def created_by_mlflow(path: Path) -> None:
    """A new store at `path`, created as `SqlAlchemyStore` creates one before it opens it:
    MLflow's initial tables, then every migration (its default experiment is not part of it:
    MLflow adds it when it first opens any store)."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()


def regenerate(target: Path = SCHEMA_FILE) -> str:
    """Dump the schema the installed MLflow creates into `target`; returns the revision."""
    import tempfile

    from mlflow.store.db.utils import _get_latest_schema_revision

    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "mlflow.db"
        created_by_mlflow(store)
        revision = _get_latest_schema_revision()
        target.write_text(dump(store, metadata.version("mlflow"), revision))
    return revision


if __name__ == "__main__":
    written = regenerate()
    sys.stderr.write(f"{SCHEMA_FILE}: MLflow {metadata.version('mlflow')}, head {written}\n")
