"""The model card of every evaluated version, written to the report folder, MLflow and the UI."""

import datetime as dt
from typing import Any

import dagster as dg

from lifecycle_assets import storage
from lifecycle_assets.config import TAG_MODEL_CARD
from lifecycle_assets.defs import names
from lifecycle_assets.defs.io_retry import io_retry
from lifecycle_assets.defs.resources import MlflowResource
from lifecycle_assets.ml.model_card import CARD_ARTIFACT_DIR, HTML_FILE, MARKDOWN_FILE, ModelCard
from lifecycle_assets.spec import ModelSpec


def build_model_card_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    """`model_card` of one model: it reads the evaluation, never the gates' verdict as a guard."""

    @dg.asset(
        key=names.key(spec.name, names.MODEL_CARD),
        ins={
            "evaluation_report": dg.AssetIn(names.key(spec.name, names.EVALUATION_REPORT)),
            "training_set": dg.AssetIn(names.key(spec.name, names.TRAINING_SET)),
        },
        group_name=spec.name,
        kinds={"mlflow", "markdown", "html"},
        io_manager_key="json_io_manager",
        description="The evaluated version's model card (Markdown and HTML), rejected or not.",
    )
    @io_retry
    def model_card(
        context: dg.AssetExecutionContext,
        mlflow: MlflowResource,
        evaluation_report: dict[str, Any],
        training_set: dict[str, Any],
    ) -> dg.Output[dict[str, Any]]:
        client = mlflow.client()
        model = evaluation_report["model"]
        registered = client.get_model_version(model["name"], model["version"])
        card = ModelCard.from_evaluation(
            spec,
            evaluation_report,
            training_set,
            registered_at=dt.datetime.fromtimestamp(registered.creation_timestamp / 1000, dt.UTC),
        )
        folder = storage.path(evaluation_report["report_dir"])  # local or object storage
        folder.mkdir(parents=True, exist_ok=True)
        markdown = card.to_markdown()
        md_path, html_path = folder / MARKDOWN_FILE, folder / HTML_FILE
        md_path.write_text(markdown)
        html_path.write_text(card.to_html())
        for path in (md_path, html_path):
            text = path.read_text()
            client.log_text(model["run_id"], text, f"{CARD_ARTIFACT_DIR}/{path.name}")
        tag = f"{CARD_ARTIFACT_DIR}/{MARKDOWN_FILE}"
        client.set_model_version_tag(model["name"], model["version"], TAG_MODEL_CARD, tag)
        context.log.info(f"model card of {model['name']} v{model['version']}: {html_path}")
        artifacts = f"runs:/{model['run_id']}/{CARD_ARTIFACT_DIR}"
        return dg.Output(
            {
                "model_name": model["name"],
                "model_version": model["version"],
                "gates_passed": card.passed,
                "markdown_path": str(md_path),
                "html_path": str(html_path),
                "mlflow_artifacts": artifacts,
            },
            metadata={
                "model_version": model["version"],
                "gates_passed": card.passed,
                "model_card": dg.MetadataValue.md(markdown),
                "html": dg.MetadataValue.path(str(html_path)),
                "markdown": dg.MetadataValue.path(str(md_path)),
                "mlflow_artifacts": artifacts,
            },
        )

    return model_card
