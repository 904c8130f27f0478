"""The evaluation report: metrics, calibration, slices, fairness and champion comparison."""

import base64
import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lifecycle_assets import config, storage
from lifecycle_assets.defs import names
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.ml import plots
from lifecycle_assets.ml.evaluation import EvaluationReport, evaluate
from lifecycle_assets.ml.gates import all_gates
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.ml.training import predict_scores
from lifecycle_assets.registry.models import ModelRef, get_version, load_version, resolve
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import ModelSpec


def image_markdown(title: str, png: bytes) -> str:
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _write_plots(report: EvaluationReport, y, proba, champion_proba, folder: Path) -> dict:
    pngs = plots.evaluation_pngs(report, y, proba, champion_proba)
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
        test = storage.read_parquet(training_set["path"]).filter(pl.col("split") == "test")
        y = test[spec.target].to_numpy()
        proba = predict_scores(candidate.pipeline, test, spec)
        champion_ref: ModelRef | None = resolve(client, spec.name, config.CHAMPION_ALIAS)
        champion_proba = None
        if champion_ref is not None and champion_ref.version != candidate_ref.version:
            champion = load_version(champion_ref)
            champion_proba = predict_scores(champion.pipeline, test, spec)
        report = evaluate(
            y,
            proba,
            test["__sensitive__"].fill_null("__missing__").to_numpy(),
            champion_proba=champion_proba,
            champion_version=champion_ref.version if champion_proba is not None else None,
            task=spec.task,
        )
        gates = all_gates(report, training_set["split_stats"], spec.gate_thresholds())

        folder = settings.reports_dir / spec.name / f"v{candidate_ref.version}"
        folder.mkdir(parents=True, exist_ok=True)
        pngs = _write_plots(report, y, proba, champion_proba, folder)
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
        with storage.local_folder(folder) as local:  # MLflow uploads from a local disk
            client.log_artifacts(candidate_ref.run_id, str(local), "evaluation")

        metric = traits(spec).primary_metric
        champion_note = (
            f"v{report.champion.champion_version}: Δ{metric} {report.champion.deltas[metric]:+.4f}"
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
                "report_dir": dg.MetadataValue.path(str(folder)),
            },
        )

    return evaluation_report
