"""A Markdown model card built from an evaluation report, gate results and lineage.

Pure string building with no I/O: the caller decides whether the card goes to MLflow, to a file
or to the Dagster UI. Every number comes from the report, so the card cannot disagree with the
gates that promoted (or refused) the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lifecycle_assets.ml.evaluation import EvaluationReport
from lifecycle_assets.ml.gates import GateResult

LIMITATIONS = (
    "This model was evaluated on a single held-out time window; performance on later data may "
    "differ as the population drifts, which is why production inputs and predictions are "
    "monitored. Metrics on small slices are noisy, and slices below the minimum size are not "
    "compared for fairness at all. Passing the fairness gate means the true-positive-rate gap "
    "stayed under the configured limit on this test set; it is not a guarantee of fair outcomes "
    "for every group or individual. Predicted probabilities are only as calibrated as the "
    "calibration section shows."
)

_SLICE_COLUMNS = (
    "group",
    "n",
    "positives",
    "positive_rate",
    "predicted_positive_rate",
    "tpr",
    "fpr",
    "precision",
    "roc_auc",
    "reported",
)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) or "none"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _key_values(data: dict[str, Any]) -> str:
    if not data:
        return "_Not recorded._"
    return _table(["field", "value"], [(key, value) for key, value in data.items()])


def _champion_section(report: EvaluationReport) -> str:
    champion = report.champion
    if champion is None:
        return "No champion existed when this model was evaluated; nothing to compare against."
    rows = [
        (
            name,
            report.metrics.get(name),
            champion.champion_metrics.get(name),
            champion.deltas.get(name),
        )
        for name in champion.deltas
    ]
    header = f"Compared with champion version {_cell(champion.champion_version)} on the same rows."
    return header + "\n\n" + _table(["metric", "challenger", "champion", "delta"], rows)


def _gates_section(gates: Sequence[GateResult]) -> str:
    if not gates:
        return "_No gates were evaluated._"
    rows = [
        (g.name, "PASSED" if g.passed else "FAILED", g.actual, g.threshold, g.description)
        for g in gates
    ]
    return _table(["gate", "verdict", "actual", "threshold", "why"], rows)


def _limitations(gates: Sequence[GateResult]) -> str:
    failed = [g for g in gates if not g.passed]
    if not failed:
        return LIMITATIONS + "\n\nAll gates passed."
    bullets = "\n".join(f"- **{g.name}** failed: {g.description}" for g in failed)
    return LIMITATIONS + "\n\nFailed gates (this version must not be promoted):\n\n" + bullets


def render_model_card(
    *,
    model_name: str,
    version: str,
    description: str,
    report: EvaluationReport,
    gates: list[GateResult],
    training: dict[str, Any],
    lineage: dict[str, Any],
) -> str:
    """The whole card as Markdown: use, data, metrics, fairness, champion, gates, lineage."""
    verdict = "all gates passed" if all(g.passed for g in gates) else "gates FAILED"
    metric_rows = [(name, value) for name, value in report.metrics.items()]
    confusion_rows = [(name, value) for name, value in report.confusion.items()]
    slice_rows = [[row.get(c) for c in _SLICE_COLUMNS] for row in report.slices]
    fairness_rows = [(name, value) for name, value in report.fairness.items()]
    sections = [
        f"# Model card: {model_name} v{version}",
        f"Status: **{verdict}** (decision threshold {report.threshold:.2f}).",
        "## Intended use",
        description.strip() or "_No description was given in the spec._",
        "## Training data",
        _key_values(training),
        "## Metrics (test set)",
        _table(["metric", "value"], metric_rows),
        _table(["cell", "count"], confusion_rows),
        "## Calibration",
        f"Expected calibration error (ECE): {report.ece:.4f} over {len(report.calibration)} "
        "non-empty equal-width bins.",
        "## Slices of the sensitive attribute",
        _table(list(_SLICE_COLUMNS), slice_rows),
        "## Fairness gaps",
        _table(["gap", "value"], fairness_rows),
        "## Champion comparison",
        _champion_section(report),
        "## Gates",
        _gates_section(gates),
        "## Lineage",
        _key_values(lineage),
        "## Limitations",
        _limitations(gates),
    ]
    return "\n\n".join(sections) + "\n"
