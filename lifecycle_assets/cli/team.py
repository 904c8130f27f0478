"""Team-mode commands: start the MLflow server the team shares."""

from __future__ import annotations

import os
import subprocess

import click

from lifecycle_assets.cli.app import main
from lifecycle_assets.mlflow_server import DEFAULT_PORT, SERVER_ENVIRONMENT, command_for
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
    env = {**SERVER_ENVIRONMENT, **os.environ}
    raise SystemExit(subprocess.call(command, env=env))


@main.command("register-webhook")
@click.option("--service-url", required=True, help="Where a model service replica listens.")
def register_webhook_command(service_url: str) -> None:
    """Make the MLflow server call the service's /hooks/registry on every alias change.

    Signed with LIFECYCLE_WEBHOOK_SECRET, which the service must share; the server needs
    MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true to call addresses inside the team's network.
    """
    from lifecycle_assets.cli.app import _client
    from lifecycle_assets.serving.registry_hooks import register_webhook

    secret = LifecycleSettings.from_env().webhook_secret
    if not secret:
        raise click.ClickException("set LIFECYCLE_WEBHOOK_SECRET first (the service needs it too)")
    webhook = register_webhook(_client(), service_url, secret)
    click.echo(f"webhook {webhook.webhook_id} -> {webhook.url}")
