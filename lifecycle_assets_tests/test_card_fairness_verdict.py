"""The model card's fairness verdict: a gate that could not be judged says so and why."""

from __future__ import annotations

from lifecycle_assets.config import GateThresholds
from lifecycle_assets.ml.card_markup import markdown_document
from lifecycle_assets.ml.card_sections import fairness_section
from lifecycle_assets.ml.evaluation import EvaluationReport
from lifecycle_assets.ml.gates import fairness_gap_within_limit

GAP = "equal_opportunity_difference"


def _report(fairness: dict) -> EvaluationReport:
    return EvaluationReport(
        threshold=0.5,
        metrics={"roc_auc": 0.8},
        confusion={"tp": 1, "fp": 0, "tn": 1, "fn": 0},
        calibration=[],
        ece=0.0,
        slices=[],
        fairness=fairness,
    )


def _verdict(report: EvaluationReport) -> str:
    gate = fairness_gap_within_limit(report, GateThresholds())
    text = markdown_document("card", "status", [fairness_section(report, [gate])])
    return next(line for line in text.splitlines() if line.startswith("Gate metric"))


def test_an_unjudged_fairness_gate_says_not_judged_and_why() -> None:
    reason = "slice 'B' has 3 rows (< 50)"
    line = _verdict(
        _report(
            {
                GAP: None,
                "groups_compared": ["A"],
                "groups_excluded": ["B"],
                "insufficient_data": [reason],
            }
        )
    )
    assert "not judged" in line
    assert reason in line
    assert "n/a" not in line
    assert "within the limit" not in line and "exceeds" not in line


def test_a_judged_fairness_gate_compares_the_gap_with_the_limit() -> None:
    passed = _verdict(_report({GAP: 0.01, "groups_compared": ["A", "B"]}))
    assert "= 0.0100 is within the limit" in passed
    failed = _verdict(_report({GAP: 0.9, "groups_compared": ["A", "B"]}))
    assert "= 0.9000 **exceeds** the limit" in failed
