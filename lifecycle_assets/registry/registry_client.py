"""An MLflow client for alias moves that opens the model-registry store only.

`MlflowClient(...)` opens the tracking store too, and on a SQLite file that runs alembic's
schema verification (loading every migration script: 2.3-2.6 s) before the first call, while
moving an alias touches registry tables only. MLflow's own model-registry store does not run
that verification (`mlflow/store/model_registry/sqlalchemy_store.py`: it checks that the tables
exist), so this client hands the registry calls to MLflow's `ModelRegistryClient` (the same
store code MlflowClient delegates to: every write still goes through MLflow, never hand SQL)
and opens a full MlflowClient only if a caller asks for anything else.

Skipping the check is safe only on a file already at the schema this MLflow expects: the
fast client is used when the file's alembic revision equals `MLFLOW_SCHEMA_HEAD` (a test pins
it to the installed MLflow's head). Any other file, or any other store, gets `configure_mlflow`
and MLflow's own checks, which name an out-of-date schema instead of failing half-way.
"""

from __future__ import annotations

from typing import Any

from lifecycle_assets.config import Settings
from lifecycle_assets.registry.reader import SqliteReader, sqlite_reader

# The newest alembic revision of MLflow 3.17.2's schema (`mlflow.store.db.utils.
# _get_latest_schema_revision()`); `test_registry_reader` fails when an upgrade changes it.
MLFLOW_SCHEMA_HEAD = "dc11669786a5"

# MlflowClient methods that only the model-registry store serves, same names and arguments.
REGISTRY_METHODS = frozenset(
    {
        "get_registered_model", "get_model_version", "get_model_version_by_alias",
        "get_model_version_download_uri", "search_model_versions",
        "set_registered_model_alias", "delete_registered_model_alias",
        "set_model_version_tag", "delete_model_version_tag",
        "set_registered_model_tag", "delete_registered_model_tag",
    }
)  # fmt: skip


class RegistryClient:
    """MlflowClient's registry calls without opening the tracking store; `reader` reads the
    same SQLite file read-only; any other attribute opens a full MlflowClient on first use."""

    def __init__(self, settings: Settings, reader: SqliteReader) -> None:
        import mlflow
        from mlflow.tracking._model_registry.client import ModelRegistryClient

        uri = settings.mlflow_tracking_uri
        # Module-level MLflow calls (artifact downloads) resolve the same store.
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        self.settings, self.reader, self.tracking_uri = settings, reader, uri
        self._registry = ModelRegistryClient(uri, uri)
        self._full: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if attribute in REGISTRY_METHODS:
            return getattr(self._registry, attribute)
        if self._full is None:
            from lifecycle_assets.registry.tracking import configure_mlflow

            self._full = configure_mlflow(self.settings)
        return getattr(self._full, attribute)


def registry_client(settings: Settings) -> Any:
    """The client alias moves use: `RegistryClient` on a SQLite file at MLflow's current
    schema, else the full `configure_mlflow` client."""
    reader = sqlite_reader(settings.mlflow_tracking_uri)
    if isinstance(reader, SqliteReader) and reader.schema_revision() == MLFLOW_SCHEMA_HEAD:
        return RegistryClient(settings, reader)
    from lifecycle_assets.registry.tracking import configure_mlflow

    return configure_mlflow(settings)
