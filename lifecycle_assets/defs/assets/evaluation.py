"""The evaluation report: metrics, calibration, slices, fairness, champion comparison, card."""

import base64
import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lifecycle_assets import config
from lifecycle_assets.defs import names
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.ml import plots
from lifecycle_assets.ml.evaluation import EvaluationReport, evaluate
from lifecycle_assets.ml.gates import all_gates
from lifecycle_assets.ml.model_card import render_model_card
from lifecycle_assets.ml.training import predict_proba
from lifecycle_assets.registry.models import ModelRef, get_version, load_version, resolve
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import ModelSpec


def image_markdown(title: str, png: bytes) -> str:
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _write_plots(report: EvaluationReport, y, proba, champion_proba, folder: Path) -> dict:
    pngs = {
        "roc_curve": plots.roc_curve_png(y, proba, champion_proba),
        "calibration": plots.calibration_png(report.calibration),
        "confusion_matrix": plots.confusion_matrix_png(report.confusion),
        "slices": plots.slice_metrics_png(report.slices),
    }
    for name, png in pngs.items():
        (folder / f"{name}.png").write_bytes(png)
    return pngs


def build_evaluation_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    """The evaluation report of the model version trained in the same lineage."""

    @dg.asset(
        key=names.key(spec.name, names.EVALUATION_REPORT),
        ins={
            "trained_model": dg.AssetIn(names.key(spec.name, names.TRAINED_MODEL)),
            "training_set": dg.AssetIn(names.key(spec.name, names.TRAINING_SET)),
        },
        group_name=spec.name,
        kinds={"mlflow", "markdown"},
        io_manager_key="json_io_manager",
        description="Test-set metrics, calibration, slices, fairness and champion comparison.",
    )
    def evaluation_report(
        context: dg.AssetExecutionContext,
        lifecycle: LifecycleResource,
        trained_model: dict[str, Any],
        training_set: dict[str, Any],
    ) -> dg.Output[dict[str, Any]]:
        settings = lifecycle.settings()
        client = configure_mlflow(settings)
        candidate_ref = get_version(client, trained_model["name"], trained_model["version"])
        candidate = load_version(candidate_ref)
        test = pl.read_parquet(training_set["path"]).filter(pl.col("split") == "test")
        y = test[spec.target].to_numpy()
        proba = predict_proba(candidate.pipeline, test, spec)
        champion_ref: ModelRef | None = resolve(client, spec.name, config.CHAMPION_ALIAS)
        champion_proba = None
        if champion_ref is not None and champion_ref.version != candidate_ref.version:
            champion = load_version(champion_ref)
            champion_proba = predict_proba(champion.pipeline, test, spec)
        report = evaluate(
            y,
            proba,
            test["__sensitive__"].fill_null("__missing__").to_numpy(),
            champion_proba=champion_proba,
            champion_version=champion_ref.version if champion_proba is not None else None,
        )
        gates = all_gates(report, training_set["split_stats"], settings.gates)

        folder = settings.reports_dir / spec.name / f"v{candidate_ref.version}"
        folder.mkdir(parents=True, exist_ok=True)
        pngs = _write_plots(report, y, proba, champion_proba, folder)
        card = render_model_card(
            model_name=spec.name,
            version=candidate_ref.version,
            description=spec.description,
            report=report,
            gates=gates,
            training={
                "window": f"{training_set['days'][0]} .. {training_set['days'][-1]}",
                "training_set_digest": training_set["digest"],
                **{f"{s}_rows": v["rows"] for s, v in training_set["split_stats"].items()},
            },
            lineage={
                "mlflow_run_id": candidate_ref.run_id,
                "dagster_run_id": context.run_id,
                "git_commit": candidate_ref.tags.get(config.TAG_GIT_COMMIT, ""),
                "artifact_sha256": candidate_ref.artifact_sha256,
            },
        )
        (folder / "model_card.md").write_text(card)
        value = {
            "model": candidate_ref.to_dict(),
            "report": report.to_dict(),
            "gates": [gate.to_dict() for gate in gates],
            "report_dir": str(folder),
        }
        (folder / "evaluation.json").write_text(json.dumps(value, indent=2, default=str))
        for key, metric in report.metrics.items():
            client.log_metric(candidate_ref.run_id, f"test_{key}", float(metric))
        for gap, metric in report.fairness.items():
            if isinstance(metric, float):
                client.log_metric(candidate_ref.run_id, f"fairness_{gap}", metric)
        client.log_artifacts(candidate_ref.run_id, str(folder), "evaluation")

        champion_note = (
            f"v{report.champion.champion_version}: ΔAUC {report.champion.deltas['roc_auc']:+.4f}"
            if report.champion
            else "no champion yet"
        )
        return dg.Output(
            value,
            metadata={
                "model_version": candidate_ref.version,
                **{k: float(v) for k, v in report.metrics.items()},
                "expected_calibration_error": report.ece,
                "fairness": dg.MetadataValue.json(report.fairness),
                "champion_comparison": champion_note,
                "gates": dg.MetadataValue.md(
                    "\n".join(
                        f"- {'✅' if g.passed else '❌'} **{g.name}**: {g.description}"
                        for g in gates
                    )
                ),
                "plots": dg.MetadataValue.md(
                    "\n\n".join(image_markdown(n, png) for n, png in pngs.items())
                ),
                "model_card": dg.MetadataValue.md(card),
                "report_dir": dg.MetadataValue.path(str(folder)),
            },
        )

    return evaluation_report
