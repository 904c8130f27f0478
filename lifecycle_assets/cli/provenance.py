"""`lifecycle trace` and `lifecycle lineage`: where a prediction came from, checked link by link.

Both exit 1 when any link is broken or missing, so an audit script can rely on the exit code
alone; the JSON (or DOT) is still written in full, to show what failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.tree import Tree

from lifecycle_assets import config
from lifecycle_assets.cli.app import _clear_errors, _require_model, console, main
from lifecycle_assets.config import Settings
from lifecycle_assets.provenance.links import (
    EVALUATION,
    FEATURES,
    MLFLOW_RUN,
    MODEL_VERSION,
    OK,
    PREDICTION,
    PROMOTION,
    RAW_BATCH,
    TRAINING_SET,
    Link,
    Trace,
)
from lifecycle_assets.registry.ledger import version_label

_MARKS = {
    OK: "[green]✓[/green]",
    "broken": "[red]✗ broken[/red]",
    "missing": "[yellow]? missing[/]",
}


def _value(value: Any) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _pairs(values: dict[str, Any], limit: int = 16) -> str:
    shown = [f"{k}={_value(v)}" for k, v in values.items()]
    more = f", … ({len(shown) - limit} more)" if len(shown) > limit else ""
    return escape(", ".join(shown[:limit]) + more)


def _headline(link: Link) -> str:
    d, mark = link.details, _MARKS.get(link.status, link.status)
    if link.kind == PREDICTION:
        return f"[bold]prediction {escape(link.id)}[/bold] {mark}"
    if link.kind == MODEL_VERSION:
        sha = (d.get("artifact_sha256") or "?")[:16]
        return f"[bold]model version {escape(link.id)}[/bold] {mark}  artifact sha256 {sha}…"
    if link.kind == PROMOTION:
        return f"promotion to `{escape(str(d.get('alias')))}` (ledger) {mark}"
    if link.kind == EVALUATION:
        return f"evaluation and gates {mark}  {escape(str(d.get('source', '')))}"
    if link.kind == MLFLOW_RUN:
        return f"[bold]MLflow run {escape(link.id)}[/bold] {mark} {d.get('status', '')}"
    if link.kind == TRAINING_SET:
        days = d.get("days") or ["?"]
        rows = sum(s.get("rows", 0) for s in (d.get("split_stats") or {}).values())
        span = f"{rows} rows, {days[0]} .. {days[-1]} ({len(days)} days)"
        return f"[bold]training set {link.id[:16]}…[/bold] {mark}  {span}"
    if link.kind == FEATURES:
        return f"features {d.get('day', '')} {str(d.get('sha256', ''))[:12]} {mark}"
    if link.kind == RAW_BATCH:
        sha = str(d.get("sha256", ""))[:12]
        if "rows" not in d:
            return f"raw batch {sha} {mark}  (the day was re-ingested since)"
        valid = {True: "validation passed", False: "validation failed"}
        checked = valid.get(d.get("validation_passed"), "not validated")
        source = escape(str(d.get("source")))
        return f"raw batch {sha} {mark}  {d['rows']} rows from {source}; {checked}"
    return f"{escape(link.kind)} {escape(link.id)} {mark}"


def _facts(link: Link) -> list[str]:
    d = link.details
    if link.kind == PREDICTION and d:
        answered = (
            f"shadow of {d['shadow_of']}" if d.get("shadow_of") else f"answered as {d['variant']}"
        )
        record_id = d.get("record_id")
        record = "no record id" if record_id is None else f"record {escape(str(record_id))}"
        facts = [
            f"at {d.get('predicted_at')}; {answered} by {d.get('model_name')} "
            f"v{d.get('model_version')}; {record}",
            f"output: {_pairs(d.get('outputs', {}))}",
            f"inputs: {_pairs(d.get('inputs', {}), limit=40)}",
        ]
        facts += [
            f"shadowed by {s['prediction_id']} (v{s['model_version']})"
            for s in d.get("shadowed_by", [])
        ]
        return facts
    if link.kind == MODEL_VERSION and d:
        tags, aliases = d.get("tags", {}), ", ".join(d.get("aliases", [])) or "none"
        retired = (
            f"; retired {tags.get(config.TAG_RETIRED_AT, '')}".rstrip()
            if str(tags.get(config.TAG_RETIRED, "")).lower() == "true"
            else ""
        )
        return [
            f"registered {d.get('registered_at')}; aliases now: {aliases}{retired}",
            f"dagster run {tags.get('dagster_run_id', '?')}; git {tags.get('git_commit', '?')}",
        ]
    if link.kind == PROMOTION:
        facts = [
            f"{m['time']} {m['kind']} {version_label(m['from_version'])} -> v{m['to_version']} by "
            f"{escape(m['actor'])}: {escape(m['reason'])}"
            + (f" (dagster run {m['dagster_run_id']})" if m.get("dagster_run_id") else "")
            for m in d.get("moves", [])
        ]
        return [
            *facts,
            f"holder at prediction time: {version_label(d.get('holder_at_prediction'))}",
        ]
    if link.kind == EVALUATION:
        return [
            f"{_MARKS[OK] if g.get('passed') else '[red]✗[/red]'} {g['name']}: "
            f"{_value(g.get('actual'))} vs threshold {_value(g.get('threshold'))}: "
            f"{escape(g['description'])}"
            for g in d.get("gates", [])
        ]
    if link.kind == MLFLOW_RUN and d:
        metrics = {k: v for k, v in sorted(d.get("metrics", {}).items()) if k.startswith("test_")}
        return [
            f"git {d.get('git_commit')}; dagster run {d.get('dagster_run_id')}; "
            f"started {d.get('started_at')}",
            f"params: {_pairs(d.get('params', {}))}",
            f"metrics: {_pairs(metrics)}",
        ]
    return []


def render_trace(trace: Trace) -> Tree:
    """The trace as a tree that follows the links (each one under the link that named it)."""
    children: dict[str | None, list[Link]] = {}
    for link in trace.links:
        children.setdefault(link.via, []).append(link)

    def grow(parent: Tree, link: Link) -> None:
        branch = parent.add(_headline(link))
        if link.reason:
            branch.add(f"[red]{escape(link.reason)}[/red]")
        for fact in _facts(link):
            branch.add(fact)
        for child in children.get(link.key, []):
            grow(branch, child)

    verdict = "[green]every link checked[/green]" if trace.ok else "[red]broken chain[/red]"
    tree = Tree(f"trace of {escape(trace.prediction_id)}: {verdict}")
    for root in children.get(None, []):
        grow(tree, root)
    return tree


@main.command()
@click.argument("prediction_id")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@_clear_errors
def trace(prediction_id: str, as_json: bool) -> None:
    """Walk PREDICTION_ID back to its raw batches, re-hashing every file; exit 1 if a link is
    broken or missing."""
    from lifecycle_assets.provenance.trace import trace_prediction

    result = trace_prediction(prediction_id, Settings.from_env())
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        console.print(render_trace(result))
    if not result.ok:
        click.get_current_context().exit(1)


@main.command()
@click.argument("model")
@click.argument("version")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "dot"]), default="json", show_default=True
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE instead of stdout.",
)
@_clear_errors
def lineage(model: str, version: str, fmt: str, out: Path | None) -> None:
    """The graph of MODEL VERSION from source batches to its predictions, for an audit; exit 1
    if any node is broken or missing."""
    from lifecycle_assets.provenance.lineage import build_lineage

    _require_model(model)
    graph = build_lineage(Settings.from_env(), model, version)
    text = graph.to_json() if fmt == "json" else graph.to_dot()
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        except OSError as error:
            raise click.ClickException(f"cannot write {out}: {error.strerror or error}") from None
        console.print(f"{len(graph.nodes)} nodes, {len(graph.edges)} edges -> {out}")
    for node in graph.nodes:
        if node.status != OK:
            click.echo(f"{node.status}: {node.id}: {node.reason}", err=True)
    if not graph.ok:
        click.get_current_context().exit(1)
