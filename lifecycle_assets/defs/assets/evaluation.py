"""The evaluation report: metrics, calibration, slices, fairness and champion comparison."""

import dataclasses
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lifecycle_assets import config, storage
from lifecycle_assets.defs import names
from lifecycle_assets.defs.io_retry import io_retry
from lifecycle_assets.defs.metadata import rounded, rounded_metrics
from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
from lifecycle_assets.ml.evaluation import EvaluationReport, evaluate
from lifecycle_assets.ml.evaluation_file import EVALUATION_FILE
from lifecycle_assets.ml.gates import all_gates
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.ml.training import predict_scores
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import ModelRef, get_version, resolve
from lifecycle_assets.registry.verdicts import seal_then_write
from lifecycle_assets.registry.verify import verify_version
from lifecycle_assets.spec import ModelSpec

PLOTS_ARTIFACT_DIR = "evaluation"


def _write_plots(report: EvaluationReport, y, proba, champion_proba, folder: Path) -> list[Path]:
    """The plots as PNG files in the report folder; the UI links them, never inlines them."""
    # matplotlib (about 0.5 s to import) loads where plots are drawn, not with the definitions.
    from lifecycle_assets.ml import plots

    paths = []
    for name, png in plots.evaluation_pngs(report, y, proba, champion_proba).items():
        path = folder / f"{name}.png"
        path.write_bytes(png)
        paths.append(path)
    return paths


def plot_links(
    paths: list[Path], mlflow: MlflowResource, run_id: str, artifact_dir: str
) -> dict[str, dg.MetadataValue]:
    """Each plot as a file path, or as its page in the MLflow UI when that is configured."""
    links = {}
    for path in paths:
        link = mlflow.artifact_link(run_id, f"{artifact_dir}/{path.name}")
        links[f"plot_{path.stem}"] = link or dg.MetadataValue.path(str(path))
    return links


def gate_metrics(gates: list) -> dict[str, float]:
    """Each gate's measured value and verdict, as MLflow metrics of the evaluated model."""
    metrics = {}
    for gate in gates:
        if gate.actual is not None:
            metrics[f"gate_{gate.name}_actual"] = float(gate.actual)
        metrics[f"gate_{gate.name}_passed"] = 1.0 if gate.passed else 0.0
    return metrics


def build_evaluation_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    """The evaluation report of the model version trained in the same lineage."""

    @dg.asset(
        key=names.key(spec.name, names.EVALUATION_REPORT),
        ins={
            "trained_model": dg.AssetIn(names.key(spec.name, names.TRAINED_MODEL)),
            "training_set": dg.AssetIn(names.key(spec.name, names.TRAINING_SET)),
        },
        group_name=spec.name,
        pool=names.training_pool(spec.name),
        kinds={"mlflow", "markdown"},
        io_manager_key="json_io_manager",
        description="Test-set metrics, calibration, slices, fairness and champion comparison.",
    )
    @io_retry
    def evaluation_report(
        context: dg.AssetExecutionContext,
        lifecycle: LifecycleResource,
        mlflow: MlflowResource,
        trained_model: dict[str, Any],
        training_set: dict[str, Any],
    ) -> dg.Output[dict[str, Any]]:
        from lifecycle_assets.registry.models import load_version

        settings = lifecycle.settings()
        client = mlflow.client()
        candidate_ref = get_version(client, trained_model["name"], trained_model["version"])
        candidate = load_version(candidate_ref)
        test = storage.read_parquet(training_set["path"]).filter(pl.col("split") == "test")
        y = test[spec.target].to_numpy()
        proba = predict_scores(candidate.pipeline, test, spec)
        champion_ref: ModelRef | None = resolve(client, spec.name, config.CHAMPION_ALIAS)
        champion_proba, champion_failure = None, None
        if champion_ref is not None and champion_ref.version != candidate_ref.version:
            champion_proba, champion_failure = _champion_scores(client, champion_ref, test)
        report = evaluate(
            y,
            proba,
            test["__sensitive__"].fill_null("__missing__").to_numpy(),
            champion_proba=champion_proba,
            champion_version=champion_ref.version if champion_proba is not None else None,
            task=spec.task,
            min_slice_size=spec.gate_thresholds().min_slice_size,
        )
        report = dataclasses.replace(report, champion_failure=champion_failure)
        gates = all_gates(
            report,
            training_set["split_stats"],
            spec.gate_thresholds(),
            training_set.get("quarantine"),
        )

        folder = settings.reports_dir / spec.name / f"v{candidate_ref.version}"
        folder.mkdir(parents=True, exist_ok=True)
        plot_paths = _write_plots(report, y, proba, champion_proba, folder)
        value = {
            "model": candidate_ref.to_dict(),
            "report": report.to_dict(),
            "gates": [gate.to_dict() for gate in gates],
            "report_dir": str(folder),
        }
        # Sealed in the ledger's database before it is written: promotion checks the file
        # against this SHA-256, so an edited verdict in the artifact store cannot pass for the
        # evaluated one, and a crash between the two leaves no file that reads as unsealed.
        seal_then_write(
            Ledger.for_settings(settings), spec.name, candidate_ref.version, value,
            folder / EVALUATION_FILE, dagster_run_id=context.run_id,
        )  # fmt: skip
        # On the LoggedModel too (`model_id`): MLflow's model page then shows test and gates.
        mlflow.log_model_metrics(
            candidate_ref.name,
            candidate_ref.version,
            {
                **{f"test_{k}": float(v) for k, v in report.metrics.items()},
                **{f"fairness_{k}": v for k, v in report.fairness.items() if isinstance(v, float)},
                **gate_metrics(gates),
            },
        )
        with storage.local_folder(folder) as local:  # MLflow uploads from a local disk
            client.log_artifacts(candidate_ref.run_id, str(local), PLOTS_ARTIFACT_DIR)

        metric = traits(spec).primary_metric
        champion_note = (
            f"v{report.champion.champion_version}: Δ{metric} {report.champion.deltas[metric]:+.4f}"
            if report.champion
            else champion_failure or "no champion yet"
        )
        return dg.Output(
            value,
            metadata={
                "model_version": candidate_ref.version,
                "mlflow_run": mlflow.run_link(candidate_ref.run_id),
                **rounded_metrics(report.metrics),
                "expected_calibration_error": rounded(report.ece),
                "fairness": dg.MetadataValue.json(
                    {
                        k: rounded(v) if isinstance(v, float) else v
                        for k, v in report.fairness.items()
                    }
                ),
                "champion_comparison": champion_note,
                "gates": dg.MetadataValue.md(
                    "\n".join(
                        f"- {'✅' if g.passed else '❌'} **{g.name}**: {g.description}"
                        for g in gates
                    )
                ),
                **plot_links(plot_paths, mlflow, candidate_ref.run_id, PLOTS_ARTIFACT_DIR),
                "report_dir": dg.MetadataValue.path(str(folder)),
            },
        )

    def _champion_scores(
        client: Any, champion_ref: ModelRef, test: pl.DataFrame
    ) -> tuple[Any, str | None]:
        """The champion's scores on the test rows, or (None, why) when its artifact fails
        verification (tampered, missing, not loadable): a gate verdict naming the champion and
        the remedy, not a step error naming a temporary file. Any other failure (the store
        unreachable) is raised, so the step is retried or fails as an error."""
        from lifecycle_assets.registry.models import load_version

        try:
            champion = load_version(champion_ref)
        except Exception:
            verdict = verify_version(client, spec.name, champion_ref.version, ref=champion_ref)
            if verdict.ok:
                raise
            return None, verdict.champion_message()
        return predict_scores(champion.pipeline, test, spec), None

    return evaluation_report
