"""Deployment commands: canary (with its traffic weight), shadow and retire."""

from __future__ import annotations

import json

import click
from rich.markup import escape

from lifecycle_assets import config
from lifecycle_assets.cli.app import (
    _actor_option,
    _alias_client,
    _clear_errors,
    _client,
    _require_model,
    _service_url_option,
    console,
    main,
)
from lifecycle_assets.registry.ledger import version_label


def _echo(payload: dict, as_json: bool, text: str) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        console.print(escape(text))


def _report(
    model: str, alias: str, previous, current, as_json: bool, weight: float | None = None
) -> None:
    """`<model> `<alias>`: v1 -> v2` (`at weight w` for a canary), or the same as JSON."""
    before = previous.version if previous else None
    after = current.version if current else None
    payload = {"model": model, "alias": alias, "previous": before, "current": after}
    text = f"{model} `{alias}`: {version_label(before)} -> {version_label(after)}"
    if weight is not None:
        payload["weight"] = weight
        text += f" at weight {weight:g}"
    _echo(payload, as_json, text)


def _version_or_clear(version: str | None, clear: bool, alias: str) -> None:
    if clear == (version is not None):
        raise click.UsageError(f"give either a VERSION for `{alias}` or --clear, not both")


@main.command()
@click.argument("model")
@click.argument("version", required=False)
@click.option("--weight", type=float, default=0.1, show_default=True, help="Traffic share.")
@click.option("--clear", is_flag=True, help="Unset the canary and its weight.")
@click.option("--reason", default="canary from the command line", show_default=True)
@click.option(
    "--override-gates",
    is_flag=True,
    help="Make a version whose gates failed the canary anyway (the failed gates go in the ledger).",
)
@_actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_clear_errors
def canary(
    model: str,
    version: str | None,
    weight: float,
    clear: bool,
    reason: str,
    override_gates: bool,
    actor: str,
    as_json: bool,
) -> None:
    """Route --weight of MODEL's traffic to VERSION (the `canary` alias), or --clear it.

    The weight is recorded in the ledger and the service routes by the ledger's weight (a
    `canary_weight` tag edited in MLflow is not obeyed). A version whose evaluation recorded
    a failed gate becomes the canary only with --override-gates, as `promote` asks."""
    from lifecycle_assets.config import Settings
    from lifecycle_assets.registry.canary import clear_canary, set_canary
    from lifecycle_assets.registry.gate_record import promotion_reason
    from lifecycle_assets.registry.ledger import Ledger

    _version_or_clear(version, clear, config.CANARY_ALIAS)
    _require_model(model)
    client = _alias_client()
    if clear:
        previous = clear_canary(client, model, reason=reason, actor=actor)
        _report(model, config.CANARY_ALIAS, previous, None, as_json)
        return
    settings = Settings.from_env()
    ledger = Ledger.for_settings(settings)  # the seal is read where the move is recorded
    reason, note = promotion_reason(
        settings, model, str(version), reason, override=override_gates, ledger=ledger,
        alias=config.CANARY_ALIAS,
    )  # fmt: skip
    previous, current = set_canary(
        client, model, version, weight, reason=reason, actor=actor, ledger=ledger
    )
    if note:  # said of a move that happened: a refused one is its error's one line
        click.echo(f"note: {note}", err=True)
    _report(model, config.CANARY_ALIAS, previous, current, as_json, weight=weight)


@main.command()
@click.argument("model")
@click.argument("version", required=False)
@click.option("--clear", is_flag=True, help="Unset the shadow.")
@click.option("--reason", default="shadow from the command line", show_default=True)
@_actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_clear_errors
def shadow(
    model: str, version: str | None, clear: bool, reason: str, actor: str, as_json: bool
) -> None:
    """Let VERSION of MODEL score every request without answering (`shadow`), or --clear it."""
    from lifecycle_assets.registry.canary import clear_shadow, set_shadow

    _version_or_clear(version, clear, config.SHADOW_ALIAS)
    _require_model(model)
    client = _alias_client()
    if clear:
        previous, current = clear_shadow(client, model, reason=reason, actor=actor), None
    else:
        previous, current = set_shadow(client, model, version, reason=reason, actor=actor)
    _report(model, config.SHADOW_ALIAS, previous, current, as_json)


@main.command()
@click.argument("model")
@click.argument("version")
@click.option("--reason", default="retired from the command line", show_default=True)
@_service_url_option("Running service asked what it serves ('' to skip)")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_clear_errors
def retire(
    model: str, version: str, reason: str, service_url: str, yes: bool, actor: str, as_json: bool
) -> None:
    """Archive VERSION of MODEL for good; refused while an alias or the service uses it."""
    from lifecycle_assets.registry.retire import dependents, probe_service
    from lifecycle_assets.registry.retire import retire as retire_version

    _require_model(model)
    client = _client()
    if not as_json:  # what retiring would cut off, before asking; `retire` checks it again
        found = dependents(client, model, version)
        console.print(f"{model} v{version} is referred to by:")
        console.print(f"  aliases: {', '.join(found.aliases) or 'none'}")
        console.print(f"  BentoML models: {', '.join(found.bento_models) or 'none'}")
        console.print(f"  Bentos: {', '.join(found.bentos) or 'none'}")
        console.print(f"  MLflow run: {found.run_id or 'none'}")
        console.print(f"  ledger entries: {len(found.ledger_entries)}")
        if service_url:
            console.print(f"  service: {escape(probe_service(service_url, model).note)}")
    if not yes:
        if as_json:
            raise click.UsageError("--json cannot ask for confirmation: add --yes")
        click.confirm(f"Retire {model} v{version}?", abort=True)
    done = retire_version(
        client, model, version, reason=reason, actor=actor, service_url=service_url or None
    )
    payload = {
        "model": model,
        "version": version,
        "archive": str(done.archive_dir),
        "artifact_sha256": done.manifest["artifact_sha256"],
        "service": done.service.note,
        "dependents": done.dependents.to_dict(),
    }
    _echo(payload, as_json, f"{model} v{version} retired; archived to {done.archive_dir}")
