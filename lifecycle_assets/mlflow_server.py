"""The team's MLflow server: tracking and registry on PostgreSQL, artifacts in object storage.

Every client (CLI, Dagster steps, service replicas) reaches MLflow over HTTP; the server proxies
artifacts (`--serve-artifacts`) so clients need no object-store credentials of their own, and
`--artifacts-destination` is the root of every experiment's artifacts, not only the first one's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lifecycle_assets.settings import LifecycleSettings

DEFAULT_PORT = 5000
# The server's environment. Registry webhooks call the model service on private addresses in a
# team's network. MLflow's job runner (GenAI scorers, trace roll-ups: nothing this project uses)
# would start a job runner and seven huey consumers beside the server, nine processes where two
# serve the registry.
SERVER_ENVIRONMENT = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


def sqlalchemy_url(database_url: str) -> str:
    """MLflow's store URL for a libpq one: SQLAlchemy with the psycopg2 driver."""
    scheme, sep, rest = database_url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg2{sep}{rest}"
    return database_url


def server_command(
    *,
    database_url: str,
    artifacts_destination: str,
    host: str,
    port: int = DEFAULT_PORT,
    workers: int = 1,
) -> list[str]:
    """The `mlflow server` command line of the team setup."""
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    return [
        mlflow, "server",
        "--backend-store-uri", sqlalchemy_url(database_url),
        "--artifacts-destination", artifacts_destination,
        "--serve-artifacts",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip


def command_for(settings: LifecycleSettings, port: int = DEFAULT_PORT) -> list[str]:
    """The server of these settings: their database, `<storage>/mlartifacts`, their host."""
    if not settings.database_url or not settings.storage_url:
        raise ValueError(
            "an MLflow server needs DATABASE_URL and LIFECYCLE_STORAGE_URL (its backend store "
            "and the object storage its artifacts go to)"
        )
    return server_command(
        database_url=settings.database_url,
        artifacts_destination=str(settings.storage_root / "mlartifacts"),
        host=settings.service_host,
        port=port,
    )
