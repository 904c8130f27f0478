"""The one typed settings object: where every piece of state lives, embedded or team.

The embedded default keeps everything under LIFECYCLE_HOME (SQLite stores, local folders) and
needs no server. `LIFECYCLE_PROFILE=team` moves the same code onto shared servers by URLs only:
the ledger on PostgreSQL (`DATABASE_URL`), the lake, quarantine, landing, reports, archive and
the collected prediction logs on object storage (`LIFECYCLE_STORAGE_URL=s3://bucket/prefix`;
each service writes its log locally and ships closed segments there), MLflow behind its HTTP server
(`MLFLOW_TRACKING_URI=http://...`) and, optionally, Dagster steps on Celery workers
(`LIFECYCLE_CELERY_BROKER`), with `lifecycle run` submitting its runs to the Dagster webserver
(`LIFECYCLE_DAGSTER_URL`). Values come from the environment, then from `.env` in the working
folder; an empty variable counts as unset, so `MLFLOW_TRACKING_URI=` in `.env` keeps the default.

Read once at the edge (resources, CLI, service start), never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from upath import UPath

EMBEDDED = "embedded"
TEAM = "team"
DEFAULT_EXPERIMENT = "lifecycle-assets"
DEFAULT_SERVICE_HOST = "127.0.0.1"
ENV_FILE = ".env"
# The source tree's root (bentofile.yaml, constraints.txt) when the package runs from a checkout.
SOURCE_ROOT = Path(__file__).resolve().parents[1]


class SettingsRefused(ValueError):
    """The environment's settings do not validate: one line naming each variable and why.

    Raised instead of pydantic's ValidationError (its URLs left out, no multi-line report), so
    the CLI, the service and the Dagster code location all show the same sentence.
    """

    def __init__(self, error: ValidationError) -> None:
        super().__init__(f"the settings (environment or .env) are refused: {settings_error(error)}")


class ServingLimits(BaseModel):
    """Limits enforced by the HTTP service before any model code runs."""

    model_config = ConfigDict(frozen=True)

    max_batch_size: int = 1_000


class LifecycleSettings(BaseSettings):
    """Every location and server the project talks to, with the embedded defaults filled in."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    profile: Literal["embedded", "team"] = Field(EMBEDDED, validation_alias="LIFECYCLE_PROFILE")
    home: Path = Field(Path(".lifecycle"), validation_alias="LIFECYCLE_HOME")
    # Root of the lake, quarantine, landing, reports, archive and prediction logs: a local folder
    # or an fsspec URL (s3://bucket/prefix). Default: LIFECYCLE_HOME.
    storage_url: str | None = Field(None, validation_alias="LIFECYCLE_STORAGE_URL")
    # PostgreSQL of the team ledger (postgresql://user@host:5432/db); Dagster's storage reads
    # its own variables in deploy/dagster/dagster.yaml.
    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    mlflow_tracking_uri: str = Field("", validation_alias="MLFLOW_TRACKING_URI")
    # Artifact location of new experiments. Against an MLflow server it stays unset unless given,
    # so the server's `--artifacts-destination` applies to every experiment.
    mlflow_artifact_root: str | None = Field(
        None, validation_alias="LIFECYCLE_MLFLOW_ARTIFACT_ROOT"
    )
    mlflow_experiment: str = Field(
        DEFAULT_EXPERIMENT, validation_alias="LIFECYCLE_MLFLOW_EXPERIMENT"
    )
    # The MLflow UI's address: the Dagster UI then links MLflow runs and plots.
    mlflow_ui_url: str | None = Field(None, validation_alias="LIFECYCLE_MLFLOW_UI_URL")
    service_host: str = Field(DEFAULT_SERVICE_HOST, validation_alias="LIFECYCLE_SERVICE_HOST")
    # S3-compatible endpoint (MinIO, moto); unset means AWS itself.
    s3_endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "LIFECYCLE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"
        ),
    )
    # Celery broker of the distributed executor (pyamqp://guest:guest@host:5672//); unset means
    # steps run in the run's own process.
    celery_broker: str | None = Field(None, validation_alias="LIFECYCLE_CELERY_BROKER")
    # The Celery queue the steps go to; workers listen on it (`dagster-celery worker -q`).
    celery_queue: str = Field("dagster", validation_alias="LIFECYCLE_CELERY_QUEUE")
    # The team's Dagster webserver (http://host:3000): `lifecycle run` and `monitor` submit runs to
    # it (the run queue and launcher of its instance) instead of executing them itself.
    dagster_url: str | None = Field(None, validation_alias="LIFECYCLE_DAGSTER_URL")
    # Secret of MLflow's registry webhooks to `POST /hooks/registry` (unset: the hook is off).
    webhook_secret: str | None = Field(None, validation_alias="LIFECYCLE_WEBHOOK_SECRET")
    # Where bentofile.yaml and constraints.txt are, read by `bento_service` to build the Bento:
    # the checkout by default; an image that installs the package into site-packages names
    # its copy (deploy/Dockerfile sets /app).
    project_dir: Path = Field(SOURCE_ROOT, validation_alias="LIFECYCLE_PROJECT_DIR")
    # How often a service closes its local prediction log segment and ships it to the shared
    # storage (team mode): the longest a row waits before monitoring and `trace` can see it.
    log_ship_seconds: float = Field(10.0, gt=0, validation_alias="LIFECYCLE_LOG_SHIP_SECONDS")
    # The HTTP service's bounds per client address (`serving/connection_limits.py`,
    # `serving/admin.py`). Behind a proxy every client shares its address: raise the first.
    max_connections_per_client: int = Field(
        256, ge=1, validation_alias="LIFECYCLE_MAX_CONNECTIONS_PER_CLIENT"
    )
    admin_max_failures: int = Field(5, ge=1, validation_alias="LIFECYCLE_ADMIN_MAX_FAILURES")
    serving: ServingLimits = Field(default_factory=ServingLimits)

    @field_validator("dagster_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"LIFECYCLE_DAGSTER_URL must be an http(s):// URL, not {url!r}")
        return url.rstrip("/") if url else url

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return Path(home).expanduser().resolve()

    @model_validator(mode="after")
    def _defaults_and_team_needs(self) -> LifecycleSettings:
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"sqlite:///{self.home / 'mlflow.db'}"
        if not self.mlflow_artifact_root and not self.mlflow_server:
            self.mlflow_artifact_root = (self.home / "mlartifacts").as_uri()
        if self.profile == TEAM:
            missing = [
                name
                for name, value in (
                    ("DATABASE_URL", self.database_url),
                    ("LIFECYCLE_STORAGE_URL", self.storage_url),
                )
                if not value
            ]
            if not self.mlflow_server:
                missing.append("MLFLOW_TRACKING_URI (http:// of the MLflow server)")
            if missing:
                raise ValueError(f"LIFECYCLE_PROFILE=team needs {', '.join(missing)}")
        elif self.database_url and (self.mlflow_server or self._remote_storage):
            # The team's URLs without the profile: the registry and the lake would be shared
            # while the alias ledger stayed in SQLite, so `history` and `trace` would show
            # nobody else's moves and record the team's as "changed outside the ledger".
            raise ValueError(
                "DATABASE_URL and a shared MLflow server or storage are set, but "
                "LIFECYCLE_PROFILE is not team: the alias ledger would stay in SQLite under "
                "LIFECYCLE_HOME, apart from the team's; set LIFECYCLE_PROFILE=team"
            )
        return self

    @property
    def _remote_storage(self) -> bool:
        from lifecycle_assets.storage import is_remote

        return bool(self.storage_url) and is_remote(self.storage_url)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LifecycleSettings:
        """Settings from the process environment and `.env`, or from `environ` alone; raises
        SettingsRefused naming each refused variable."""
        try:
            if environ is None:
                return cls()
            values = {key: value for key, value in environ.items() if value != ""}
            return cls.model_validate(values)
        except ValidationError as error:
            raise SettingsRefused(error) from None

    def replace(self, **changes: Any) -> LifecycleSettings:
        """A copy with some fields changed, validated again (so defaults follow a new home)."""
        data = {**self.model_dump(exclude={"serving"}), **changes}
        if "home" in changes:
            for derived in ("mlflow_tracking_uri", "mlflow_artifact_root"):
                if derived not in changes:
                    data.pop(derived)  # the embedded default follows the new home
        serving = data.pop("serving", self.serving)
        values = {_env_name(name): value for name, value in data.items() if value not in (None, "")}
        try:
            return type(self).model_validate({**values, "serving": serving})
        except ValidationError as error:
            raise SettingsRefused(error) from None

    # -- derived locations -----------------------------------------------------------------
    @property
    def team(self) -> bool:
        return self.profile == TEAM

    @property
    def mlflow_server(self) -> bool:
        """True when MLflow is reached over HTTP (a tracking server), not a local store."""
        return self.mlflow_tracking_uri.startswith(("http://", "https://"))

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options of the storage root: the S3 endpoint and no stale listings."""
        if (self.storage_url or "").startswith(("s3://", "s3a://")):
            return s3_options(self.s3_endpoint_url)
        return {}

    @property
    def storage_root(self) -> UPath:
        """Root of the shared folders; a plain local Path (PosixUPath) in the embedded default."""
        if not self.storage_url:
            return UPath(self.home)
        if "://" not in self.storage_url:
            return UPath(Path(self.storage_url).expanduser().resolve())
        return UPath(self.storage_url, **self.storage_options)

    @property
    def lake_dir(self) -> UPath:
        return self.storage_root / "lake"

    @property
    def quarantine_dir(self) -> UPath:
        return self.storage_root / "quarantine"

    @property
    def landing_dir(self) -> UPath:
        return self.storage_root / "landing"

    @property
    def reports_dir(self) -> UPath:
        return self.storage_root / "reports"

    @property
    def prediction_log_dir(self) -> UPath:
        """Where the prediction logs are collected and read (monitoring, `trace`): the shared
        storage when it is object storage, else `<home>/prediction_logs` as always."""
        if self._remote_storage:
            return self.storage_root / "prediction_logs"
        return self.prediction_log_spool_dir

    @property
    def prediction_log_spool_dir(self) -> UPath:
        """Where a service writes its log: a local disk, since object storage cannot append.
        When it differs from `prediction_log_dir`, closed segments are shipped there
        (`serving/log_shipping.py`)."""
        return UPath(self.home) / "prediction_logs"

    @property
    def ships_prediction_logs(self) -> bool:
        return self.prediction_log_dir != self.prediction_log_spool_dir

    @property
    def archive_dir(self) -> UPath:
        return self.storage_root / "archive"

    @property
    def bentos_dir(self) -> UPath:
        """Where `bento_service` exports built Bentos in team mode, for any host to import."""
        return self.storage_root / "bentos"

    @property
    def dagster_io_dir(self) -> UPath:
        """Where the IO manager keeps asset values: shared, so steps on other hosts read them."""
        return self.storage_root / "dagster_io"


def s3_options(endpoint_url: str | None) -> dict[str, Any]:
    """s3fs options: the endpoint when one is set, and listings always read fresh.

    s3fs caches directory listings per process by default; a lake shared by several machines
    must see objects another writer added a moment ago.
    """
    options: dict[str, Any] = {"use_listings_cache": False}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    return options


def s3_storage_options() -> dict[str, Any]:
    """s3fs options of the environment's settings, for locations read back from manifests."""
    return s3_options(LifecycleSettings.from_env().s3_endpoint_url)


def settings_error(error: ValidationError) -> str:
    """Pydantic's refusal of the settings as one line naming each variable, without its URLs:
    what a command prints instead of a traceback."""
    names = {field: _env_name(field) for field in LifecycleSettings.model_fields}
    parts = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        where = ".".join(names.get(str(part), str(part)) for part in item["loc"])
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _env_name(field: str) -> str:
    """The environment variable a field is read from (the first one when several are)."""
    alias = LifecycleSettings.model_fields[field].validation_alias
    return alias.choices[0] if isinstance(alias, AliasChoices) else str(alias)


def load_env_file(path: str | Path = ENV_FILE) -> None:
    """Export `.env` into the process environment without overriding what is already set.

    The settings object reads `.env` itself; MLflow, boto3 and Dagster read only the process
    environment, so the CLI and the service export the file once at start.
    """
    from dotenv import dotenv_values

    file = Path(path)
    if not file.is_file():
        return
    for key, value in dotenv_values(file).items():
        if value not in (None, "") and key not in os.environ:
            os.environ[key] = value
