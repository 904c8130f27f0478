"""The lineage of one model version as a graph, from source batches to the predictions it made.

An auditor wants the whole picture at once: which raw batches (with their source URI and hash)
became which feature partitions, the training-set snapshot, the MLflow run, the registered
version with its gates and promotions, and what it answered, day by day. Every node is built
from the same checked links as `trace`, so a tampered file shows as a broken node here too.
Graphviz DOT is written as text: rendering it is the reader's choice, not a dependency.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.provenance.links import (
    BROKEN,
    EVALUATION,
    FEATURES,
    MISSING,
    MLFLOW_RUN,
    MODEL_VERSION,
    OK,
    RAW_BATCH,
    TRAINING_SET,
    Link,
)
from lifecycle_assets.provenance.predictions import logged_predictions
from lifecycle_assets.provenance.trace import version_chain
from lifecycle_assets.registry.ledger import COMMITTED, Ledger
from lifecycle_assets.registry.reader import reader_for

PREDICTIONS = "predictions"
# How each kind of node feeds the next one downstream.
RELATIONS = {
    RAW_BATCH: "featurized",
    FEATURES: "snapshotted",
    TRAINING_SET: "trained",
    MLFLOW_RUN: "registered",
    EVALUATION: "judged",
    MODEL_VERSION: "served",
}
_FILL = {OK: "#e8f4ea", BROKEN: "#f8d0d0", MISSING: "#fff1c9"}


@dataclass(frozen=True)
class Node:
    """One artifact of the lineage, with the verdict of the link check that found it."""

    id: str
    kind: str
    label: str
    status: str = OK
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Edge:
    """`source` fed `target` (downstream direction, as an auditor reads it)."""

    source: str
    target: str
    relation: str


@dataclass(frozen=True)
class Lineage:
    """Nodes and edges from raw batches to predictions of one model version."""

    model: str
    version: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    @property
    def ok(self) -> bool:
        return all(node.status == OK for node in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "ok": self.ok,
            "nodes": [asdict(node) for node in self.nodes],
            "edges": [
                {"from": e.source, "to": e.target, "relation": e.relation} for e in self.edges
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_dot(self) -> str:
        """Graphviz DOT, left to right; broken nodes red, missing ones dashed and yellow."""
        lines = [
            "digraph lineage {",
            f"  graph [rankdir=LR, labelloc=t, label={_quote(f'{self.model} v{self.version}')}];",
            '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
            '  edge [fontname="Helvetica", fontsize=9];',
        ]
        for node in self.nodes:
            label = node.label + (f"\n{node.status.upper()}: {node.reason}" if node.reason else "")
            style = ', style="rounded,filled,dashed"' if node.status == MISSING else ""
            color = ', color="#c00000", penwidth=2' if node.status == BROKEN else ""
            lines.append(
                f"  {_quote(node.id)} [label={_quote(label)}, "
                f'fillcolor="{_FILL.get(node.status, "#ffffff")}"{style}{color}];'
            )
        lines += [
            f"  {_quote(e.source)} -> {_quote(e.target)} [label={_quote(e.relation)}];"
            for e in self.edges
        ]
        return "\n".join([*lines, "}", ""])


def _quote(text: str) -> str:
    """A DOT string: quotes and backslashes escaped, line breaks as DOT's own `\\n`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _label(link: Link) -> str:
    d, short = link.details, link.id.rsplit("/", 1)[-1][:12]
    if link.kind == RAW_BATCH:
        rows = f"{d['rows']} rows, {d['status']}" if "rows" in d else "re-ingested since"
        return f"raw batch {d.get('day', '')}\n{short}\n{rows}\n{d.get('source', '')}".strip()
    if link.kind == FEATURES:
        return f"features {d.get('day', '')}\n{short}"
    if link.kind == TRAINING_SET:
        days = d.get("days") or ["?"]
        return f"training set {short}\n{days[0]} .. {days[-1]} ({len(days)} days)"
    if link.kind == MLFLOW_RUN:
        return f"MLflow run {short}\ngit {(d.get('git_commit') or '?')[:12]}"
    if link.kind == EVALUATION:
        gates = d.get("gates", [])
        return f"evaluation\n{sum(bool(g.get('passed')) for g in gates)}/{len(gates)} gates passed"
    if link.kind == MODEL_VERSION:
        sha = (d.get("artifact_sha256") or "?")[:12]
        return f"{d.get('name')} v{d.get('version')}\nartifact {sha}"
    return f"{link.kind}\n{link.id}"


def predictions_by_day(settings: Settings, model: str, version: str) -> list[dict[str, Any]]:
    """What the version answered (or shadowed), per UTC day: count, first and last id, variants,
    and the problems of the lake tables the day was read from.

    Read where `trace` finds a prediction (the service's log, then the lake's daily tables), once
    per prediction id. A day whose table cannot be read is listed with a count of None: the
    version may have answered then.
    """
    rows, unreadable = logged_predictions(settings, model)
    for column in ("model_version", "variant", "training_digest"):
        if column not in rows.columns:
            rows = rows.with_columns(pl.lit(None, pl.String).alias(column))
    rows = rows.filter(pl.col("model_version") == version).sort("predicted_at")
    days = rows.group_by(pl.col("predicted_at").dt.date().alias("day"), maintain_order=True).agg(
        count=pl.len(),
        first_prediction_id=pl.col("prediction_id").first(),
        last_prediction_id=pl.col("prediction_id").last(),
        first_at=pl.col("predicted_at").first(),
        last_at=pl.col("predicted_at").last(),
        variants=pl.col("variant").fill_null(config.CHAMPION_ALIAS).unique().sort(),
        training_digests=pl.col("training_digest").drop_nulls().unique().sort(),
        problems=pl.col("problem").drop_nulls().unique().sort(),
    )
    by_day = {
        row["day"].isoformat(): {
            **row, "day": row["day"].isoformat(), "first_at": row["first_at"].isoformat(),
            "last_at": row["last_at"].isoformat(),
        }
        for row in days.to_dicts()
    }  # fmt: skip
    for table in unreadable:
        blank = {"day": table.day, "count": None, "problems": []}
        by_day.setdefault(table.day, blank)["problems"].append(table.problem)
    return [by_day[day] for day in sorted(by_day)]


def _prediction_node(day: dict[str, Any], digest: str) -> Node:
    ident, problems = f"{PREDICTIONS}:{day['day']}", "; ".join(day["problems"])
    if day["count"] is None:
        label = f"predictions {day['day']}\nnot counted"
        return Node(ident, PREDICTIONS, label, MISSING, f"unreadable: {problems}", day)
    label = f"predictions {day['day']}\n{day['count']} ({', '.join(day['variants'])})"
    if problems:
        return Node(ident, PREDICTIONS, label, BROKEN, problems, day)
    others = [d for d in day["training_digests"] if d and d != digest]
    if others:
        reason = f"rows logged training digest {others[0]}, the version records {digest}"
        return Node(ident, PREDICTIONS, label, BROKEN, reason, day)
    return Node(ident, PREDICTIONS, label, OK, "", day)


def build_lineage(settings: Settings, model: str, version: str, client: Any = None) -> Lineage:
    """The checked graph of `model` `version`: data, run, version, evaluation, predictions.

    The registry is read through `registry.reader` (`client` serves a store it cannot read)."""
    ledger = Ledger.for_settings(settings)
    links, ref = version_chain(reader_for(settings, client), settings, ledger, model, version)
    nodes = [
        Node(link.key, link.kind, _label(link), link.status, link.reason, link.details)
        for link in links
    ]
    edges = []
    for link in links:
        if link.via is None:
            continue
        # Links point upstream (who referred to me); lineage flows downstream, except the
        # evaluation, which judges the version rather than feeding it.
        pair = (link.via, link.key) if link.kind == EVALUATION else (link.key, link.via)
        edges.append(Edge(*pair, RELATIONS.get(link.kind, "")))
    if ref is not None:
        promotions = [
            e.to_dict() for e in ledger.entries(model, state=COMMITTED) if e.to_version == version
        ]
        nodes[0].details["promotions"] = promotions
        for day in predictions_by_day(settings, model, version):
            node = _prediction_node(day, ref.training_digest)
            nodes.append(node)
            edges.append(Edge(nodes[0].id, node.id, RELATIONS[MODEL_VERSION]))
    return Lineage(model, version, tuple(nodes), tuple(edges))
