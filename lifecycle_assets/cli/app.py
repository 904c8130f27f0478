"""The `lifecycle` command group and what its commands share (console, options, errors)."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.rule import Rule

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.ledger import default_actor
from lifecycle_assets.registry.server_check import short_connection_error

if TYPE_CHECKING:  # the spec module (pydantic, yaml) loads only for commands that read specs
    from lifecycle_assets.spec import ModelSpec
from lifecycle_assets.settings import load_env_file

# Piped or redirected, rich would cut every table cell to fit 80 columns: a history saved to a
# file lost its reasons ("passed gates: training_da…"). Off a terminal, lines are as wide as
# their content (COLUMNS, when set, still decides).
# A rule spans the console's width: off a terminal it keeps a reader's 80 columns instead.
PIPED_WIDTH = 4000
PIPED_RULE_WIDTH = 80
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPED_WIDTH)


def rule(title: str) -> None:
    """A titled rule across the terminal, or 80 columns wide when the output is piped."""
    console.print(Rule(title), width=PIPED_RULE_WIDTH if console.width == PIPED_WIDTH else None)


PROJECT_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
ALIASES = (config.CHAMPION_ALIAS, config.CHALLENGER_ALIAS, config.CANARY_ALIAS, config.SHADOW_ALIAS)


def _dagster_instance():
    """The persistent instance under DAGSTER_HOME (default `.dagster_home`, with our yaml)."""
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if PROJECT_DAGSTER_YAML.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(PROJECT_DAGSTER_YAML, home / "dagster.yaml")
    try:
        return dg.DagsterInstance.get()
    except Exception as error:
        # A corrupt or locked run/event database: one line naming the instance, not a
        # SQLAlchemy traceback.
        if not _is_store_error(error):
            raise
        first = str(error).strip().splitlines()[0]
        raise click.ClickException(
            f"the Dagster instance in {home} (DAGSTER_HOME) cannot be opened: {first}"
        ) from None


def _spec_option(function):
    return click.option(
        "--spec",
        "spec_path",
        default=None,
        metavar="FILE|MODEL",
        help="A model spec file, or the name of one of the project's models (LIFECYCLE_SPECS); "
        "default: the project's first model.",
    )(function)


def _project_specs() -> list[ModelSpec]:
    """The project's models (LIFECYCLE_SPECS); a spec file that is missing or invalid ends the
    command in one line naming it."""
    from lifecycle_assets.spec import SpecError, configured_specs

    try:
        return configured_specs()
    except SpecError as error:
        raise click.ClickException(str(error)) from None


def _load(spec_path: str | Path | None) -> ModelSpec:
    """A spec file, or the project's model of that name, or the project's first model."""
    from lifecycle_assets.spec import SpecError, load_spec

    if spec_path is not None and Path(spec_path).is_file():
        try:
            return load_spec(spec_path)
        except SpecError as error:
            raise click.ClickException(str(error)) from None
    specs = _project_specs()
    if spec_path is None:
        return specs[0]
    by_name = {spec.name: spec for spec in specs}
    if str(spec_path) not in by_name:
        raise click.BadParameter(
            f"{spec_path!r} is neither a spec file nor one of the project's models "
            f"{sorted(by_name)}",
            param_hint="--spec",
        )
    return by_name[str(spec_path)]


def _require_model(name: str) -> None:
    """End the command in one line, exit 1, when neither the registry nor the project knows
    MODEL: a typo must not read as "no history" or an empty status, exit 0."""
    from lifecycle_assets.registry.reader import reader_for
    from lifecycle_assets.spec import SpecError, configured_specs

    reader = reader_for(Settings.from_env())
    if reader.model_state(name) is not None:
        return
    try:  # the project's models (their spec files read only now, for an unknown name)
        project = [spec.name for spec in configured_specs()]
    except SpecError:
        project = []
    if name in project:
        return
    known = sorted({*reader.model_names(), *project})
    raise click.ClickException(
        f"unknown model {name!r}: known models are {', '.join(known) or 'none yet'}"
    )


@click.group()
def main() -> None:
    """The ML model lifecycle as Dagster assets, tracked in MLflow, served by BentoML."""
    # Dagster labels APIs we rely on (dagster-mlflow, data versions, partitioned checks) as
    # beta or preview; the notice on every run says nothing a user can act on.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview)")
    # `.env` reaches MLflow, boto3 and Dagster too, which read only the process environment.
    load_env_file()
    # Keep Bentos and BentoML models with the rest of the project's state, as `make` does.
    os.environ.setdefault("BENTOML_HOME", str(_settings().home / "bentoml"))


def _settings() -> Settings:
    """The environment's settings; a refused one (LIFECYCLE_PROFILE=team without its URLs, a
    misspelt profile) ends the command in one line naming the variables, not a traceback."""
    from lifecycle_assets.settings import SettingsRefused

    try:
        return Settings.from_env()
    except SettingsRefused as error:
        raise click.ClickException(str(error)) from None


def _clear_errors(function: Callable[..., None]) -> Callable[..., None]:
    """Registry errors end the command with one line on stderr and exit code 1.

    A locked or unreachable store is one of them: SQLite's busy timeout has already waited
    (a bounded wait), and what is left to say is that the registry could not be used, not a
    SQLAlchemy traceback.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from lifecycle_assets.registry.ledger import AliasError

        try:
            function(*args, **kwargs)
        except Exception as error:
            if _is_store_error(error):
                first = str(error).strip().splitlines()[0]
                raise click.ClickException(f"the registry could not be used: {first}") from None
            told = isinstance(error, AliasError) or _is_corrupt_file(error)
            if not told and not _is_mlflow_error(error):
                raise
            first = str(error).strip().splitlines()[0]
            raise click.ClickException(short_connection_error(first)) from None

    return wrapper


def _is_store_error(error: Exception) -> bool:
    """A database error below MLflow or the ledger (locked, unreachable, corrupt), checked
    without importing SQLAlchemy when the command did not."""
    kinds: list[type] = [sqlite3.Error]
    if (alchemy := sys.modules.get("sqlalchemy.exc")) is not None:
        kinds.append(alchemy.DatabaseError)  # OperationalError and a file that is no database
    return isinstance(error, tuple(kinds))


def _is_corrupt_file(error: Exception) -> bool:
    """A stored file that no longer parses (`storage.CorruptFileError`, which names it), or an
    MLflow server that does not answer (`server_check.TrackingServerError`, which names it)."""
    storage = sys.modules.get("lifecycle_assets.storage")
    server = sys.modules.get("lifecycle_assets.registry.server_check")
    return (storage is not None and isinstance(error, storage.CorruptFileError)) or (
        server is not None and isinstance(error, server.TrackingServerError)
    )


def _is_mlflow_error(error: Exception) -> bool:
    """Whether MLflow raised it, without importing MLflow (1.5-2 s) when the command did not:
    an error cannot come from a package that was never loaded."""
    exceptions = sys.modules.get("mlflow.exceptions")
    return exceptions is not None and isinstance(error, exceptions.MlflowException)


def _client():
    from lifecycle_assets.registry.tracking import configure_mlflow

    return configure_mlflow(Settings.from_env())


def _alias_client():
    """The client of the alias commands: MLflow's SQLite file directly where that is safe (see
    `registry.registry_client`), so a move loads neither MLflow nor scikit-learn; when it falls
    back to MlflowClient, one line on stderr says why."""
    from lifecycle_assets.registry.registry_client import registry_client

    def say(note: str) -> None:
        click.echo(f"note: {note}", err=True)

    return registry_client(Settings.from_env(), on_fallback=say)


def _service_url_option(help_text: str):
    """One flag and one variable for the running service, on every command that talks to it."""
    return click.option(
        "--service-url",
        "--url",
        "service_url",
        envvar="LIFECYCLE_SERVICE_URL",
        default=config.DEFAULT_SERVICE_URL,
        show_default=True,
        help=f"{help_text} (env LIFECYCLE_SERVICE_URL).",
    )


def _actor_option(function):
    return click.option(
        "--actor",
        default=None,
        callback=lambda _ctx, _param, value: value or default_actor(),
        help="Who is making the change (default: $USER@hostname).",
    )(function)
