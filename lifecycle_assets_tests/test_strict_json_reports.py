"""Reports that hold floats are strict JSON: a metric that is NaN is written as null.

A bare `NaN` token is not JSON; a strict reader (the scorecard, a dashboard, `jq`) refuses the
whole file. The drift `latest.json`, `evaluation.json` and every value the IO manager stores
(live performance among them) go through the one rule in `valid_json`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lifecycle_assets import storage
from lifecycle_assets.config import DriftThresholds
from lifecycle_assets.ml.drift import (
    DriftReport,
    FeatureDrift,
    latest_drift_path,
    write_latest_drift,
)
from lifecycle_assets.ml.evaluation import EvaluationReport
from lifecycle_assets.serving.metrics import prediction_metrics


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _feature(name: str, psi: float) -> FeatureDrift:
    return FeatureDrift(name, "numeric", 10, psi, None, None, None, None, 0.0, 0.0, False, ())


def test_the_drift_report_writes_a_nan_psi_as_null(tmp_path: Path) -> None:
    report = DriftReport(
        rows=10,
        features=(_feature("income", math.nan), _feature("age", 0.02)),
        score=_feature("__score__", math.inf),
        drifted_share=0.0,
        drifted=False,
        thresholds=DriftThresholds(),
    )
    write_latest_drift(tmp_path, "strict_json_model", "2026-03-05", report)

    latest = _strict(latest_drift_path(tmp_path, "strict_json_model").read_text())
    assert latest["psi"] == {"income": None, "age": 0.02, "__score__": None}
    # The service exports it: an unknown PSI is NaN on the gauge, the others as written.
    metrics = prediction_metrics()
    metrics.export_drift("strict_json_model", latest)
    gauge = metrics.drift_psi.labels("strict_json_model", "income")._value.get()
    assert math.isnan(gauge)
    assert metrics.drift_psi.labels("strict_json_model", "age")._value.get() == 0.02


def test_an_evaluation_report_with_a_nan_metric_is_strict_json(tmp_path: Path) -> None:
    report = EvaluationReport(
        threshold=0.5,
        metrics={"roc_auc": math.nan, "f1": 0.5},
        confusion={"tp": 1},
        calibration=[{"bin_lower": 0.0, "mean_predicted": math.nan}],
        ece=math.nan,
        slices=[],
        fairness={"equal_opportunity_difference": math.nan},
    )
    path = tmp_path / "evaluation.json"
    storage.write_json(path, {"report": report.to_dict(), "gates": []})

    written = _strict(path.read_text())["report"]
    assert written["metrics"] == {"roc_auc": None, "f1": 0.5}
    assert written["ece"] is None
    assert written["calibration"][0]["mean_predicted"] is None
    assert written["fairness"]["equal_opportunity_difference"] is None
