"""The model card's sections on how a version scored: metrics, slices, fairness, calibration, gates.

Each builder reads the evaluation report (and the gate verdicts) and returns one `Section`, so the
Markdown and the HTML card say the same thing. The builders follow the task: a regressor's
sections show errors and a relative calibration error, a classifier's the confusion counts and a
probability ECE.
"""

from __future__ import annotations

from collections.abc import Sequence

from lifecycle_assets.ml.card_markup import Block, Section, Table, format_value, rows_table
from lifecycle_assets.ml.evaluation import EvaluationReport
from lifecycle_assets.ml.gates import FAIRNESS_GATE, GateResult
from lifecycle_assets.ml.metrics import SLICE_SCHEMA
from lifecycle_assets.ml.regression_metrics import REGRESSION_SLICE_SCHEMA
from lifecycle_assets.ml.tasks import traits


def metrics_section(report: EvaluationReport) -> Section:
    """Test metrics with the task's primary metric first, champion deltas, confusion counts."""
    primary = traits(report.task).primary_metric
    names = [primary, *(n for n in report.metrics if n != primary)]
    rows = tuple(
        (f"{n} (primary)" if n == primary else n, v)
        for n in names
        if (v := report.metrics.get(n)) is not None
    )
    blocks: list[Block] = [Table(("metric", "value"), rows)]
    champion = report.champion
    if champion is None:
        blocks.append("No champion existed at evaluation: nothing to compare against.")
    else:
        blocks.append(f"Compared with champion v{champion.champion_version} on the same rows:")
        blocks.append(
            Table(
                ("metric", "this version", "champion", "delta"),
                tuple(
                    (n, report.metrics.get(n), champion.champion_metrics.get(n), d)
                    for n, d in champion.deltas.items()
                ),
            )
        )
    if report.confusion:
        blocks.append(f"Confusion counts at decision threshold {report.threshold:.2f}:")
        blocks.append(Table(("cell", "count"), tuple(report.confusion.items())))
    return Section("Metrics (test set)", tuple(blocks))


def slices_section(report: EvaluationReport, sensitive_attribute: str) -> Section:
    note = (
        "`reported` marks slices large enough to compare"
        + (" and holding both classes" if report.confusion else "")
        + "; only those enter the fairness gaps."
    )
    return Section(
        f"Slices of `{sensitive_attribute}`",
        (rows_table(report.slices, _slice_columns(report.slices)), note),
    )


def _slice_columns(rows: Sequence[dict]) -> tuple[str, ...]:
    """The slice table's columns in the metrics' own order (group, n, ... reported): the rows
    come from evaluation.json, whose keys are sorted, which put `fpr` before `group`."""
    present = {key for row in rows for key in row}
    known = [c for c in (*SLICE_SCHEMA, *REGRESSION_SLICE_SCHEMA) if c in present]
    ordered = tuple(dict.fromkeys(known))
    return ordered + tuple(sorted(present - set(ordered)))


def fairness_section(report: EvaluationReport, gates: Sequence[GateResult]) -> Section:
    metric = traits(report.task).fairness_gate_metric
    gaps = tuple((k, v) for k, v in report.fairness.items() if not isinstance(v, list))
    blocks: list[Block] = [Table(("gap", "value"), gaps)]
    gate = next((g for g in gates if g.name == FAIRNESS_GATE), None)
    if gate is None:
        blocks.append(f"Gate metric `{metric}`: no fairness gate was evaluated for this version.")
    elif gate.actual is None:
        # No gap could be measured (too few comparable slices): there is no value to hold
        # against the limit, so the card says why instead of comparing "n/a" with it.
        blocks.append(
            f"Gate metric `{metric}`: **not judged**: {gate.description} (`{FAIRNESS_GATE}`)."
        )
    else:
        verdict = "is within" if gate.passed else "**exceeds**"
        blocks.append(
            f"Gate metric `{metric}` = {format_value(gate.actual)} {verdict} the limit "
            f"{format_value(gate.threshold)} (`{FAIRNESS_GATE}`)."
        )
    blocks.append(
        f"Groups compared: {format_value(report.fairness.get('groups_compared', []))}. "
        f"Groups excluded (not `reported`): {format_value(report.fairness.get('groups_excluded'))}."
    )
    return Section("Fairness gaps", tuple(blocks))


def calibration_section(report: EvaluationReport) -> Section:
    bins = len(report.calibration)
    if report.task == "regression":
        text = (
            f"Relative calibration error {report.ece:.4f}: the count-weighted mean "
            f"|mean predicted - observed mean target| over {bins} prediction-quantile bins, "
            "divided by the mean |target|."
        )
        observed = "observed_mean"
    else:
        text = f"Expected calibration error (ECE) {report.ece:.4f} over {bins} equal-width bins."
        observed = "observed_rate"
    rows = tuple(
        (r["bin_lower"], r["bin_upper"], r["count"], r["mean_predicted"], r["observed_rate"])
        for r in report.calibration
    )
    headers = ("bin_lower", "bin_upper", "count", "mean_predicted", observed)
    return Section("Calibration", (text, Table(headers, rows)))


def gates_section(gates: Sequence[GateResult]) -> Section:
    rows = tuple(
        (g.name, g.actual, g.threshold, "PASSED" if g.passed else "FAILED", g.description)
        for g in gates
    )
    note = (
        "A card is written for every evaluated version, rejected ones included; only a version "
        "that passed every gate can become `champion`."
    )
    if not gates:
        return Section("Gates", ("No gates were evaluated.", note))
    return Section("Gates", (Table(("gate", "actual", "threshold", "verdict", "why"), rows), note))
