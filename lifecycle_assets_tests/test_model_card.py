"""Model cards: content for both tasks, HTML escaping, and the asset's files, MLflow and UI."""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import numpy as np
import pytest

from lifecycle_assets import config
from lifecycle_assets.config import GateThresholds, Settings
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.model_card import build_model_card_asset
from lifecycle_assets.defs.resources import JsonIOManager, LifecycleResource, MlflowResource
from lifecycle_assets.ml.evaluation import EvaluationReport, evaluate
from lifecycle_assets.ml.gates import FAIRNESS_GATE, GateResult, all_gates
from lifecycle_assets.ml.model_card import ModelCard
from lifecycle_assets.ml.plots import calibration_png
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import BUILTIN_SPECS_DIR, ModelSpec, load_spec

SPLITS = ("train", "validation", "test")
CALIBRATION_KEYS = ("bin_lower", "bin_upper", "count", "mean_predicted", "observed_rate")
REGRESSION_SLICE_KEYS = (
    "group", "n", "mean_target", "mean_prediction", "mae", "rmse", "bias", "reported"
)  # fmt: skip


def training_set(digest: str = "train-digest") -> dict[str, Any]:
    days = [f"2026-01-{d:02d}" for d in range(1, 11)]
    return {
        "digest": digest,
        "days": days,
        "split_days": {"train": days[:6], "validation": days[6:8], "test": days[8:]},
        "split_digests": {s: f"{s}-sha" for s in SPLITS},
        "split_stats": {s: {"rows": 1_000, "positives": 100} for s in SPLITS},
        "path": "/nowhere/training_set.parquet",
    }


def model(version: str = "3", digest: str = "train-digest", run_id: str = "run-42") -> dict:
    tags = {
        config.TAG_TRAINING_DIGEST: digest,
        config.TAG_TEST_DIGEST: "test-sha",
        config.TAG_ARTIFACT_SHA256: "f00dcafe",
        config.TAG_GIT_COMMIT: "deadbeef",
        config.TAG_DAGSTER_RUN_ID: "dg-7",
    }
    ref = ModelRef("credit_default", version, run_id, "models:/m-1", tags)
    return ref.to_dict()


def classification_report() -> EvaluationReport:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    proba = np.clip(0.3 * y + rng.uniform(0, 0.7, 600), 0, 1)
    champion = np.clip(0.1 * y + rng.uniform(0, 0.9, 600), 0, 1)
    groups = np.where(rng.uniform(size=600) < 0.5, "female", "male").astype("<U16")
    groups[:8] = "nonbinary"  # too small to compare: must show up as excluded
    return evaluate(y, proba, groups, champion_proba=champion, champion_version="2")


def classification_evaluation(report_dir: Path | None, min_roc_auc: float = 0.99) -> dict:
    """A rejected version by default: the AUC floor is out of reach."""
    report = classification_report()
    stats = training_set()["split_stats"]
    gates = all_gates(report, stats, GateThresholds(min_roc_auc=min_roc_auc))
    return {
        "model": model(),
        "report": report.to_dict(),
        "gates": [g.to_dict() for g in gates],
        "report_dir": str(report_dir) if report_dir else None,
    }


def regression_evaluation() -> dict:
    """Built by hand in the shapes the regression evaluation produces."""
    report = EvaluationReport(
        threshold=0.0,
        metrics={
            "r2": 0.21,
            "rmse": 812.5,
            "mae": 301.25,
            "mean_target": 240.0,
            "mean_prediction": 236.0,
            "n": 4800.0,
        },
        confusion={},
        calibration=[
            dict(zip(CALIBRATION_KEYS, row, strict=True))
            for row in ((0.0, 120.0, 2400, 60.0, 55.0), (120.0, 2500.0, 2400, 412.0, 425.0))
        ],
        ece=0.0375,
        slices=[
            dict(zip(REGRESSION_SLICE_KEYS, row, strict=True))
            for row in (
                ("female", 2300, 230.0, 228.0, 290.0, 800.0, -2.0, True),
                ("male", 2480, 250.0, 244.0, 311.0, 825.0, -6.0, True),
                ("nonbinary", 20, 200.0, 260.0, 350.0, 900.0, 60.0, False),
            )
        ],
        fairness={
            "relative_mae_gap": 0.0697,
            "mae_gap": 21.0,
            "bias_gap": 4.0,
            "groups_compared": ["female", "male"],
            "groups_excluded": ["nonbinary"],
        },
        task="regression",
    )
    gates = [
        GateResult("training_data_is_sane", True, 6000.0, 1000.0, "6000 rows"),
        GateResult("r2_meets_minimum", True, 0.21, 0.05, "test R² 0.2100 meets 0.0500"),
        GateResult("no_regression_vs_champion", True, None, -0.01, "no champion yet"),
        GateResult(FAIRNESS_GATE, True, 0.0697, 0.5, "relative MAE gap 0.0697 within 0.5"),
    ]
    return {
        "model": {**model(), "name": "expected_loss"},
        "report": report.to_dict(),
        "gates": [g.to_dict() for g in gates],
        "report_dir": None,
    }


@pytest.fixture
def regression_spec() -> ModelSpec:
    return load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml")


def headings(markdown: str) -> list[str]:
    return [line[3:] for line in markdown.splitlines() if line.startswith("## ")]


def test_classification_card_covers_every_section(spec: ModelSpec) -> None:
    card = ModelCard.from_evaluation(spec, classification_evaluation(None), training_set())
    text = card.to_markdown()
    assert text.startswith("# Model card: credit_default v3\n")
    assert headings(text) == [
        "Model details", "Intended use", "Out-of-scope use", "Training data",
        "Metrics (test set)", "Slices of `gender`", "Fairness gaps", "Calibration", "Gates",
        "Limitations", "Lineage",
    ]  # fmt: skip
    assert "**REJECTED**: failed auc_meets_minimum" in text and not card.passed
    assert "| auc_meets_minimum |" in text and "| FAILED |" in text
    metric_rows = text.split("| metric | value |\n|---|---|\n")[1].splitlines()
    assert metric_rows[0].startswith("| roc_auc (primary) |")
    report = card.report
    for expected in (
        spec.description, spec.estimator.kind, "decision threshold", "| tn |",
        "champion v2", f"{report.ece:.4f}", f"{report.metrics['roc_auc']:.4f}",
        "2026-01-01 .. 2026-01-10 (10 days)", "2026-01-09 .. 2026-01-10 (2 days)", "train-sha",
        "Gate metric `equal_opportunity_difference`", "the limit 0.2000",
        "Decisions about `gender`", "Slices nonbinary could not be compared",
        "run-42", "dg-7", "deadbeef", "f00dcafe", "test-sha",
        "`lifecycle lineage credit_default 3`", "rejected ones included",
    ):  # fmt: skip
        assert expected in text, expected


def test_regression_card_follows_the_task(regression_spec: ModelSpec) -> None:
    card = ModelCard.from_evaluation(regression_spec, regression_evaluation(), training_set())
    text = card.to_markdown()
    assert card.passed and "Status: **all gates passed**." in text
    metric_rows = text.split("| metric | value |\n|---|---|\n")[1].splitlines()
    assert metric_rows[0] == "| r2 (primary) | 0.2100 |"
    assert "| n | 4800 |" in text
    for expected in (
        "predicts `loss_amount`", "predicted value", "Relative calibration error 0.0375",
        "observed_mean", "| mae | rmse | bias |", "Gate metric `relative_mae_gap` = 0.0697",
        "the limit 0.5000", "Slices nonbinary could not be compared", "No champion existed",
        "| r2_meets_minimum |", "`lifecycle lineage expected_loss 3`",
    ):  # fmt: skip
        assert expected in text, expected
    for classifier_only in ("decision threshold", "Confusion counts", "ECE", "| tn |"):
        assert classifier_only not in text


def test_html_is_escaped_and_embeds_plots(spec: ModelSpec, tmp_path: Path) -> None:
    evaluation = classification_evaluation(tmp_path)
    (tmp_path / "calibration.png").write_bytes(calibration_png(evaluation["report"]["calibration"]))
    evaluation["model"]["tags"][config.TAG_GIT_COMMIT] = "<b>bold</b>"
    hostile = spec.model_copy(update={"description": "Risk <script>alert(1)</script> & more"})
    page = ModelCard.from_evaluation(hostile, evaluation, training_set()).to_html()
    assert page.startswith("<!doctype html>") and page.endswith("</html>")
    assert "<script>" not in page and "<b>bold</b>" not in page
    assert "Risk &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert '<img alt="calibration" src="data:image/png;base64,' in page
    assert '<td class="FAILED">FAILED</td>' in page and "<code>gender</code>" in page


def test_card_refuses_a_training_set_the_version_was_not_trained_on(spec: ModelSpec) -> None:
    with pytest.raises(ValueError, match="rerun the training job"):
        ModelCard.from_evaluation(spec, classification_evaluation(None), training_set("other"))


def test_asset_writes_card_files_mlflow_artifacts_and_metadata(
    lifecycle_env: Settings, spec: ModelSpec, registered_champion: ModelRef
) -> None:
    folder = lifecycle_env.reports_dir / spec.name / f"v{registered_champion.version}"
    folder.mkdir(parents=True)
    evaluation = classification_evaluation(folder)  # a rejected version still gets its card
    evaluation["model"] = registered_champion.to_dict()
    (folder / "calibration.png").write_bytes(calibration_png(evaluation["report"]["calibration"]))

    @dg.asset(key=names.key(spec.name, names.EVALUATION_REPORT), io_manager_key="json_io_manager")
    def evaluation_report() -> dict:
        return evaluation

    @dg.asset(key=names.key(spec.name, names.TRAINING_SET), io_manager_key="json_io_manager")
    def training() -> dict:
        return training_set(digest=registered_champion.training_digest)

    card_asset = build_model_card_asset(spec)
    assert card_asset.key == dg.AssetKey([spec.name, "model_card"])
    result = dg.materialize(
        [evaluation_report, training, card_asset],
        resources={
            "lifecycle": LifecycleResource(),
            "mlflow": MlflowResource(),
            "json_io_manager": JsonIOManager(base_dir=str(lifecycle_env.home / "io")),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    output = result.output_for_node(card_asset.node_def.name)
    markdown = (folder / "model_card.md").read_text()
    assert output["gates_passed"] is False and "**REJECTED**" in markdown
    assert '<img alt="calibration"' in (folder / "model_card.html").read_text()

    (materialization,) = result.asset_materializations_for_node(card_asset.node_def.name)
    meta = materialization.metadata
    assert meta["model_card"].value == markdown
    assert meta["html"].value == str(folder / "model_card.html")

    client = configure_mlflow(lifecycle_env)
    run_id = registered_champion.run_id
    logged = {Path(f.path).name for f in client.list_artifacts(run_id, "model_card")}
    assert logged == {"model_card.md", "model_card.html"}
    version = client.get_model_version(spec.name, registered_champion.version)
    assert version.tags[config.TAG_MODEL_CARD] == "model_card/model_card.md"
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/model_card/model_card.md") == markdown


def test_the_slice_table_keeps_the_metrics_order_after_a_json_round_trip(spec: ModelSpec) -> None:
    """evaluation.json is written with sorted keys: the card read back from it put `fpr`
    first and `group` second."""
    stored = json.loads(json.dumps(classification_evaluation(None), sort_keys=True))
    text = ModelCard.from_evaluation(spec, stored, training_set()).to_markdown()
    header = text.split("## Slices of `gender`\n\n")[1].splitlines()[0]
    assert header == (
        "| group | n | positives | positive_rate | predicted_positive_rate | tpr | fpr | precision"
        " | roc_auc | reported |"
    ), header
