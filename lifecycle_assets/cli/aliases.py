"""Commands that move aliases through the ledger and show what holds them."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from lifecycle_assets import config
from lifecycle_assets.cli.app import (
    ALIASES,
    _actor_option,
    _alias_client,
    _clear_errors,
    _load,
    _project_specs,
    _require_model,
    _service_url_option,
    _spec_option,
    console,
    main,
)
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.ledger import version_label


def _report_move(name: str, alias: str, move, as_json: bool) -> None:
    """`<model> `<alias>`: v1 -> v2` and a line per alias the move ended (`ended` in JSON)."""
    previous, current = move
    before = previous.version if previous else None
    if as_json:
        payload = {"model": name, "alias": alias, "previous": before, "current": current.version}
        changed = before != current.version or move.adopted
        adopted = {"adopted": True} if move.adopted else {}
        extra = {"changed": changed, **adopted, "ended": move.ended}
        click.echo(json.dumps({**payload, **extra}, indent=2))
    elif move.adopted:
        console.print(
            f"{name} `{alias}`: v{current.version}, set outside the platform, is now promoted "
            "(recorded in the ledger)"
        )
    elif before == current.version:
        console.print(f"{name} `{alias}` already points to v{current.version}; nothing changed.")
    else:
        console.print(f"{name} `{alias}`: {version_label(before)} -> v{current.version}")
    for ended, version in {} if as_json else move.ended.items():
        weight = "; its traffic weight is removed" if ended == config.CANARY_ALIAS else ""
        console.print(f"{name} `{ended}` v{version} ended: it is now the {alias}{weight}")


@main.command()
@click.argument("model")
@click.argument("version")
@click.option(
    "--alias", type=click.Choice(ALIASES), default=config.CHAMPION_ALIAS, show_default=True
)
@click.option("--reason", default="promoted from the command line", show_default=True)
@click.option(
    "--expect",
    default=None,
    help="Refuse unless the alias still points to this version ('none': unset).",
)
@click.option(
    "--override-gates",
    is_flag=True,
    help="Make a version whose gates failed `champion` (or `canary`) anyway (the failed gates "
    "go in the ledger).",
)
@_actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_clear_errors
def promote(
    model: str,
    version: str,
    alias: str,
    reason: str,
    expect: str | None,
    override_gates: bool,
    actor: str,
    as_json: bool,
) -> None:
    """Point an alias (default `champion`) at VERSION of MODEL, recorded in the ledger.

    A new champion ends the canary or shadow of its version; a canary takes its weight from
    `lifecycle canary`, not from here. A version whose evaluation recorded a failed gate
    becomes `champion` (or `canary`) only with --override-gates."""
    from lifecycle_assets.registry.aliases import ANY_VERSION, move_alias
    from lifecycle_assets.registry.gate_record import promotion_reason
    from lifecycle_assets.registry.ledger import Ledger

    _require_model(model)
    settings = Settings.from_env()
    ledger = Ledger.for_settings(settings)  # the seal is read where the move is recorded
    # `--alias canary` of the version the canary already names adopts it: the same rule.
    reason, note = promotion_reason(
        settings, model, version, reason, override=override_gates, ledger=ledger, alias=alias
    )
    expected = ANY_VERSION if expect is None else None if expect.lower() == "none" else expect
    move = move_alias(
        _alias_client(), model, alias, version, reason=reason, actor=actor,
        expected_version=expected, ledger=ledger,
    )  # fmt: skip
    if note:  # said of a move that happened: a refused one is its error's one line
        click.echo(f"note: {note}", err=True)
    _report_move(model, alias, move, as_json)


@main.command()
@click.argument("model")
@click.option("--to", "to_version", default=None, help="Version to roll back to.")
@click.option("--reason", default="", help="Why (kept in the ledger).")
@_actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_clear_errors
def rollback(model: str, to_version: str | None, reason: str, actor: str, as_json: bool) -> None:
    """Move `champion` of MODEL back to the previous champion in the ledger, or to --to."""
    from lifecycle_assets.registry.aliases import PASSED_OVER
    from lifecycle_assets.registry.aliases import rollback as roll_back

    _require_model(model)
    move = roll_back(_alias_client(), model, actor=actor, reason=reason, to_version=to_version)
    _report_move(model, config.CHAMPION_ALIAS, move, as_json)
    current = move.current
    # Earlier holders that no longer verify are skipped: say which, or the version reached
    # looks like a mistake to whoever expected the last champion.
    why = current.tags.get(f"{config.CHAMPION_ALIAS}_reason", "")
    if PASSED_OVER in why and not as_json:
        click.echo(f"note: {why}", err=True)


@main.command()
@click.argument("model")
@click.option("--alias", default=None, help="Only this alias.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@_clear_errors
def history(model: str, alias: str | None, as_json: bool) -> None:
    """Every recorded alias change of MODEL, oldest first."""
    from lifecycle_assets.registry.ledger import history as ledger_history

    entries = ledger_history(model, alias)
    if not entries:  # recorded changes name a model the ledger knows, registered or not now
        _require_model(model)
    _note_unrecorded(model, alias)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    if not entries:
        console.print(f"no alias changes of {model} recorded")
        return
    table = Table("time (UTC)", "alias", "from", "to", "state", "actor", "reason", title=model)
    for e in entries:
        state = {"COMMITTED": "[green]", "ABORTED": "[red]"}.get(e.state, "[yellow]") + e.state
        table.add_row(
            e.time[:19].replace("T", " "), e.alias, e.from_version or "-", e.to_version or "-",
            state, escape(e.actor), escape(e.reason),
        )  # fmt: skip
    console.print(table)


def _note_unrecorded(model: str, alias: str | None) -> None:
    """A note on stderr for each alias the registry holds where the ledger does not say so (a
    lost or replaced ledger file, a move made in the MLflow UI): the history shown is then not
    the whole story, and the next alias command records the difference."""
    from lifecycle_assets.registry.alias_reconcile import outside_change
    from lifecycle_assets.registry.ledger import Ledger
    from lifecycle_assets.registry.reader import reader_for

    live = reader_for(Settings.from_env()).aliases(model) or {}
    recorded = {a: e.to_version for a, e in Ledger.default().holders(model).items()}
    for name in sorted(set(live) | {a for a, v in recorded.items() if v is not None}):
        if (alias is None or name == alias) and live.get(name) != recorded.get(name):
            click.echo(
                f"note: the registry shows `{name}` -> {version_label(live.get(name))}, the "
                f"ledger {version_label(recorded.get(name))}: "
                f"{outside_change(recorded.get(name), live.get(name))} (the next alias command "
                "records it)",
                err=True,
            )


@main.command()
@click.argument("model", required=False)
@_spec_option
@_service_url_option("The running service to ask what it actually serves")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@_clear_errors
def status(model: str | None, spec_path: str | None, service_url: str, as_json: bool) -> None:
    """Which version each alias of MODEL points to (since when, by whom), and what the running
    service actually serves; without MODEL or --spec, every model of the project."""
    from lifecycle_assets.registry.reader import reader_for

    if model:
        _require_model(model)
    if model or spec_path:
        names = [model or _load(spec_path).name]
    else:
        names = [spec.name for spec in _project_specs()]
    reader = reader_for(Settings.from_env())
    statuses = {name: _alias_status(name, reader, service_url) for name in names}
    if as_json:
        # One model: its status as before; several: keyed by model name.
        payload = statuses[names[0]] if len(names) == 1 else statuses
        click.echo(json.dumps(payload, indent=2))
        return
    for name, held in statuses.items():
        _print_status(name, held, service_url)


def _alias_status(name: str, reader: Any, service_url: str) -> dict[str, Any]:
    """Each alias of one model (registry, with the ledger's when/who when it agrees) and what
    the service says it serves (under `service`)."""
    from lifecycle_assets.registry.ledger import Ledger
    from lifecycle_assets.registry.promotions import lost_holder_reason, promotion_in

    entries = Ledger.default().entries(name)  # one read of the ledger for every alias
    held: dict[str, Any] = {}
    gone: dict[str, str] = {}
    why_gone: dict[str, str] = {}
    for alias in ALIASES:
        found = reader.resolve(name, alias)
        # The ledger's word only when the platform itself moved the alias there: a move made
        # in MLflow directly is not a promotion, and the service does not serve it.
        entry = promotion_in(entries, alias)
        promoted = entry.to_version if entry is not None else None
        if found is None:
            held[alias] = None
            if promoted is not None:
                gone[alias] = promoted  # alias removed, version deleted or model renamed
                deleted = reader.version(name, promoted) is None
                why_gone[alias] = lost_holder_reason(name, alias, promoted, deleted=deleted)
            continue
        ref = found.to_dict()
        known = entry if promoted == ref["version"] else None
        held[alias] = {
            **ref,
            "since": known.time if known else None,
            "by": known.actor if known else None,
            "reason": known.reason if known else None,
            "promoted": known is not None,
            "ledger_version": promoted,
        }
        if alias == config.CANARY_ALIAS and known is not None:
            held[alias].update(_canary_weights(name, reader, ref["version"], known.weight))
    # Only when there is something to say: scripts read the aliases and `service`.
    missing = {"missing_in_registry": gone, "missing_reasons": why_gone} if gone else {}
    return {**held, **missing, "service": served_by(service_url, name)}


def _canary_weights(name: str, reader: Any, version: str, weight: float | None) -> dict[str, Any]:
    """The canary's weight as the ledger recorded it (`weight`, of the last promotion that
    named `version`: what `promotions.promoted_weight` gives and the service routes by), as
    the registry's tag shows it, and the line on their disagreement (None when they agree)."""
    from lifecycle_assets.registry.promotions import registry_weight, weight_problem

    shown = registry_weight(reader, name)
    problem = weight_problem(name, version, shown, weight)
    return {"weight": weight, "registry_weight": shown, "weight_problem": problem}


# The aliases a service follows (the `challenger` is a label it does not read).
SERVED_ALIASES = (config.CHAMPION_ALIAS, config.CANARY_ALIAS, config.SHADOW_ALIAS)


def _unpromoted_line(name: str, alias: str, ref: dict[str, Any]) -> str:
    """One line on an alias set outside the platform, with both ways out."""
    version, promoted = ref["version"], version_label(ref["ledger_version"])
    return (
        f"[red]not promoted[/red]: {name} `{alias}` -> v{version} was set outside the platform "
        f"(the ledger's last promotion is {promoted}), so the service does not serve it: "
        f"`lifecycle rollback {name}` to restore it, or `lifecycle promote {name} {version}` "
        "to keep it"
    )


def _print_status(name: str, held: dict[str, Any], service_url: str) -> None:
    served = held["service"]
    table = Table("alias", "version", "since (UTC)", "by", "mlflow run", "training digest", "bento")
    table.title = name
    for alias in ALIASES:
        ref = held[alias]
        if ref is None:
            table.add_row(alias, "-", "", "", "", "", "")
            continue
        since = ref["since"][:19].replace("T", " ") if ref["since"] else "not in ledger"
        tags = ref["tags"]
        table.add_row(
            alias, ref["version"], since, escape(ref["by"] or ""), ref["run_id"][:12],
            tags.get(config.TAG_TRAINING_DIGEST, "")[:12], tags.get(config.TAG_BENTO_TAG, ""),
        )  # fmt: skip
    console.print(table)
    for alias in SERVED_ALIASES:
        if (ref := held[alias]) is not None and not ref["promoted"]:
            console.print(_unpromoted_line(name, alias, ref))
        if ref is not None and (problem := ref.get("weight_problem")):
            console.print(f"[red]weight not obeyed[/red]: {escape(problem)}")
        if (why := held.get("missing_reasons", {}).get(alias)) is not None:
            console.print(
                f"[red]missing[/red]: {why} (a running service keeps serving it until it "
                "restarts, then serves no version of this alias)"
            )
    if served["reachable"]:
        roles = ", ".join(
            f"{role} v{held_role['version']}"
            for role, held_role in (served["serving"] or {}).items()
            if held_role
        )
        console.print(f"service {service_url} serves: {roles or 'nothing'}")
        for refusal in served.get("refused") or []:
            console.print(f"[red]refused[/red]: {escape(json.dumps(refusal))}")
        if degraded := served.get("degraded"):
            console.print(f"[red]degraded[/red]: {escape(json.dumps(degraded))}")
        for role, lost in (served.get("lost_roles") or {}).items():
            # The canary or shadow it does not serve (serving/lost_roles.py).
            console.print(f"[red]lost[/red]: {role} v{lost['version']}: {escape(lost['reason'])}")
    else:
        where = f" {service_url}" if service_url else ""
        console.print(f"service{where}: {served['error']}")


def served_by(url: str, name: str) -> dict[str, Any]:
    """What the service at `url` says it serves (best effort: an unreachable one is reported)."""
    from lifecycle_assets.registry.service_probe import probe_service

    if not url:  # `--service-url ''`: the operator asked not to probe (as `retire` takes it)
        return {"url": "", "reachable": False, "error": "not asked (no service URL given)"}
    probe = probe_service(url, name, timeout=1.0)
    if not probe.reachable or probe.metadata is None:
        return {"url": url, "reachable": False, "error": probe.note}
    metadata = probe.metadata
    serving = metadata.get("serving") or {"champion": {"version": metadata.get("model_version")}}
    return {
        "url": url,
        "reachable": True,
        "serving": serving,
        "refused": metadata.get("refused", []),
        # The alias holder could not serve and an earlier good version does (serving/fallback).
        "degraded": metadata.get("degraded"),
        "canary_weight_problem": metadata.get("canary_weight_problem"),
        # The canary or shadow the registry names that the service does not serve.
        "lost_roles": metadata.get("lost_roles") or {},
        "last_swap": metadata.get("last_swap"),
    }
