"""Team-mode commands: start the MLflow server the team shares."""

from __future__ import annotations

import os
import subprocess

import click

from lifecycle_assets.cli.app import main
from lifecycle_assets.mlflow_server import DEFAULT_PORT, WEBHOOK_ENVIRONMENT, command_for
from lifecycle_assets.settings import LifecycleSettings


@main.command("mlflow-server")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
@click.option("--print", "print_only", is_flag=True, help="Print the command instead of running.")
def mlflow_server(port: int, print_only: bool) -> None:
    """MLflow's tracking server on DATABASE_URL, artifacts under LIFECYCLE_STORAGE_URL.

    Binds LIFECYCLE_SERVICE_HOST (default 127.0.0.1); clients then set
    MLFLOW_TRACKING_URI=http://<host>:<port>.
    """
    try:
        command = command_for(LifecycleSettings.from_env(), port)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if print_only:
        click.echo(" ".join(command))
        return
    env = {**WEBHOOK_ENVIRONMENT, **os.environ}
    raise SystemExit(subprocess.call(command, env=env))
