"""The `lifecycle` command: run the lifecycle, simulate data, show what serves, move aliases.

Alias commands call `registry.aliases`, so the CLI, the Dagster assets and scripts share one
ledger and one lock; their errors are one line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.data.simulator import ShiftKnobs, simulate_range
from lifecycle_assets.registry.ledger import default_actor
from lifecycle_assets.spec import DEFAULT_SPEC_PATH, ModelSpec, load_spec

console = Console()
PROJECT_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
ALIASES = (config.CHAMPION_ALIAS, config.CHALLENGER_ALIAS, config.CANARY_ALIAS, config.SHADOW_ALIAS)


def _dagster_instance():
    """The persistent instance under DAGSTER_HOME (default `.dagster_home`, with our yaml)."""
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if PROJECT_DAGSTER_YAML.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(PROJECT_DAGSTER_YAML, home / "dagster.yaml")
    return dg.DagsterInstance.get()


def _spec_option(function):
    return click.option(
        "--spec",
        "spec_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Model spec file (default: LIFECYCLE_SPECS's first entry or the built-in spec).",
    )(function)


def _load(spec_path: Path | None) -> ModelSpec:
    if spec_path is None:
        first = (os.environ.get("LIFECYCLE_SPECS") or str(DEFAULT_SPEC_PATH)).split(",")[0]
        spec_path = Path(first.strip())
    return load_spec(spec_path)


@click.group()
def main() -> None:
    """The ML model lifecycle as Dagster assets, tracked in MLflow, served by BentoML."""
    # Dagster labels APIs we rely on (dagster-mlflow, data versions, partitioned checks) as
    # beta or preview; the notice on every run says nothing a user can act on.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview)")
    # Keep Bentos and BentoML models with the rest of the project's state, as `make` does.
    os.environ.setdefault("BENTOML_HOME", str(Settings.from_env().home / "bentoml"))


@main.command()
@_spec_option
@click.option("--refresh", is_flag=True, help="Re-ingest days that are already materialized.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run(spec_path: Path | None, refresh: bool, as_json: bool) -> None:
    """Ingest the training window, train, evaluate, gate, promote and build the Bento."""
    from lifecycle_assets.definitions import build_definitions
    from lifecycle_assets.lifecycle_run import (
        ingest_window,
        partitions_in_window,
        train_and_deploy,
        write_summary,
    )

    spec = _load(spec_path)
    if spec_path is not None:
        os.environ["LIFECYCLE_SPECS"] = str(spec_path.resolve())
    settings = Settings.from_env()
    instance = _dagster_instance()
    defs = build_definitions([spec])
    days = partitions_in_window(spec)
    with Progress(console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"ingesting {len(days)} days of {spec.name}", total=len(days))
        ingest = ingest_window(
            defs, spec, instance, refresh=refresh, progress=lambda _: progress.advance(task)
        )
    if not as_json:
        console.print(
            f"ingested {len(ingest.ingested)} day(s), {len(ingest.skipped)} already done, "
            f"{len(ingest.quarantined)} quarantined"
        )
        console.print("training, evaluating and gating (one Dagster run)...")
    summary = train_and_deploy(defs, spec, instance, ingest)
    path = write_summary(summary, settings)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        _print_summary(summary, settings, path)
    if summary.model_version is None:
        raise SystemExit(1)


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _print_summary(summary, settings: Settings, path: Path) -> None:
    from lifecycle_assets.registry.models import resolve
    from lifecycle_assets.registry.tracking import configure_mlflow

    champion = resolve(configure_mlflow(settings), summary.model_name, config.CHAMPION_ALIAS)
    console.rule(f"[bold]{summary.model_name} v{summary.model_version}")
    metrics = Table("metric", "value", title="test-set metrics")
    for key in ("roc_auc", "f1", "precision", "recall", "log_loss", "brier_score"):
        if key in summary.metrics:
            metrics.add_row(key, f"{summary.metrics[key]:.4f}")
    console.print(metrics)
    gates = Table("gate", "verdict", "actual", "threshold", title="gates (blocking checks)")
    for gate in summary.gates:
        verdict = "[green]PASS" if gate["passed"] else "[red]FAIL"
        gates.add_row(gate["name"], verdict, _number(gate["actual"]), _number(gate["threshold"]))
    console.print(gates)
    if summary.promoted:
        console.print(f"[green]v{summary.model_version} is now `champion`.")
    else:
        held = f"v{champion.version}" if champion else "nobody"
        console.print(f"[red]not promoted[/red] ({summary.failure}); `champion` stays {held}.")
    console.print(f"Bento: {summary.bento_tag or 'not built'}")
    console.print(f"summary: {path}")
    console.print(
        "next: `make dev` (Dagster UI on http://127.0.0.1:3000), `make serve` "
        "(champion on http://127.0.0.1:3001), `make mlflow-ui`, `lifecycle status`"
    )


@main.command()
@click.option("--days", type=int, default=7, show_default=True)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default="2026-03-02", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Landing folder (default: $LIFECYCLE_HOME/landing/credit_default).",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--rows-per-day", type=int, default=400, show_default=True)
@click.option("--covariate-shift", type=float, default=0.0, show_default=True)
@click.option("--concept-shift", type=float, default=0.0, show_default=True)
@click.option("--label-shift", type=float, default=0.0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet")
def simulate(
    days: int,
    start: dt.datetime,
    out: Path | None,
    seed: int,
    rows_per_day: int,
    covariate_shift: float,
    concept_shift: float,
    label_shift: float,
    fmt: str,
) -> None:
    """Write simulated credit-risk batches (one file per day) into a landing folder."""
    out = out or Settings.from_env().landing_dir / "credit_default"
    out.mkdir(parents=True, exist_ok=True)
    shift = ShiftKnobs(covariate=covariate_shift, concept=concept_shift, label=label_shift)
    for day, frame in simulate_range(
        start.date(), days, seed=seed, rows_per_day=rows_per_day, shift=shift
    ):
        path = out / f"{day.isoformat()}.{fmt}"
        if fmt == "parquet":
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
        console.print(f"wrote {path} ({frame.height} rows)")


def _clear_errors(function: Callable[..., None]) -> Callable[..., None]:
    """Registry errors end the command with one line on stderr and exit code 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from mlflow.exceptions import MlflowException

        from lifecycle_assets.registry.ledger import AliasError

        try:
            function(*args, **kwargs)
        except (AliasError, MlflowException) as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None

    return wrapper


def _client():
    from lifecycle_assets.registry.tracking import configure_mlflow

    return configure_mlflow(Settings.from_env())


def _actor_option(function):
    return click.option(
        "--actor",
        default=None,
        callback=lambda _ctx, _param, value: value or default_actor(),
        help="Who is making the change (default: $USER@hostname).",
    )(function)


def _report_move(name: str, alias: str, previous, current, as_json: bool) -> None:
    before = previous.version if previous else None
    if as_json:
        payload = {"model": name, "alias": alias, "previous": before, "current": current.version}
        click.echo(json.dumps({**payload, "changed": before != current.version}, indent=2))
    elif before == current.version:
        console.print(f"{name} `{alias}` already points to v{current.version}; nothing changed.")
    else:
        console.print(
            f"{name} `{alias}`: {f'v{before}' if before else 'unset'} -> v{current.version}"
        )


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
@_actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_clear_errors
def promote(
    model: str,
    version: str,
    alias: str,
    reason: str,
    expect: str | None,
    actor: str,
    as_json: bool,
) -> None:
    """Point an alias (default `champion`) at VERSION of MODEL, recorded in the ledger."""
    from lifecycle_assets.registry.aliases import ANY_VERSION, move_alias

    expected = ANY_VERSION if expect is None else None if expect.lower() == "none" else expect
    previous, current = move_alias(
        _client(), model, alias, version, reason=reason, actor=actor,
        expected_version=expected,
    )  # fmt: skip
    _report_move(model, alias, previous, current, as_json)


@main.command()
@click.argument("model")
@click.option("--to", "to_version", default=None, help="Version to roll back to.")
@click.option("--reason", default="", help="Why (kept in the ledger).")
@_actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_clear_errors
def rollback(model: str, to_version: str | None, reason: str, actor: str, as_json: bool) -> None:
    """Move `champion` of MODEL back to the previous champion in the ledger, or to --to."""
    from lifecycle_assets.registry.aliases import rollback as roll_back

    previous, current = roll_back(
        _client(), model, actor=actor, reason=reason, to_version=to_version
    )
    _report_move(model, config.CHAMPION_ALIAS, previous, current, as_json)


@main.command()
@click.argument("model")
@click.option("--alias", default=None, help="Only this alias.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@_clear_errors
def history(model: str, alias: str | None, as_json: bool) -> None:
    """Every recorded alias change of MODEL, oldest first."""
    from lifecycle_assets.registry.ledger import history as ledger_history

    entries = ledger_history(model, alias)
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


@main.command()
@click.argument("model", required=False)
@_spec_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@_clear_errors
def status(model: str | None, spec_path: Path | None, as_json: bool) -> None:
    """Which version each alias of MODEL (default: the spec's) points to, since when, by whom."""
    from lifecycle_assets.registry.ledger import Ledger
    from lifecycle_assets.registry.models import resolve

    name = model or _load(spec_path).name
    client = _client()
    recorded = Ledger.default().holders(name)
    held: dict[str, dict[str, Any] | None] = {}
    for alias in ALIASES:
        ref = resolve(client, name, alias)
        entry = recorded.get(alias)
        if ref is None:
            held[alias] = None
            continue
        # The ledger's word only when it agrees with the registry, the source of truth.
        known = entry if entry is not None and entry.to_version == ref.version else None
        held[alias] = {
            **ref.to_dict(),
            "since": known.time if known else None,
            "by": known.actor if known else None,
            "reason": known.reason if known else None,
        }
    if as_json:
        click.echo(json.dumps(held, indent=2))
        return
    table = Table("alias", "version", "since (UTC)", "by", "mlflow run", "training digest", "bento")
    table.title = name
    for alias, ref in held.items():
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


if __name__ == "__main__":
    main()
