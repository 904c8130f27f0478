"""Bundle a registered version into the BentoML model store and build the Bento around it.

A built Bento must serve without the registry (DESIGN: "a built Bento is self-contained"), so the
MLflow model directory is copied into a BentoML model whose metadata carries the registry
provenance (`ModelRef.to_dict()`); the service in `bento` mode reads both back and re-checks the
SHA-256 before loading. Every build setting lives in `bentofile.yaml`, not here.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import bentoml

from lifecycle_assets import config
from lifecycle_assets.registry.models import ModelRef, download_model
from lifecycle_assets.serving.model_source import BENTO_MODEL_SUBDIR, BENTO_REF_KEY

BENTOFILE = "bentofile.yaml"


def export_version(ref: ModelRef) -> str:
    """Copy the registered version into a new BentoML model `ref.name`; return its tag."""
    labels = {
        "registered_model": ref.name,
        "model_version": ref.version,
        "run_id": ref.run_id,
    }
    metadata = {
        BENTO_REF_KEY: ref.to_dict(),
        "model_version": ref.version,
        "run_id": ref.run_id,
        config.TAG_ARTIFACT_SHA256: ref.artifact_sha256,
        config.TAG_TRAINING_DIGEST: ref.training_digest,
    }
    with tempfile.TemporaryDirectory() as tmp:
        downloaded = download_model(ref, tmp)
        with bentoml.models.create(ref.name, labels=labels, metadata=metadata) as model:
            shutil.copytree(downloaded, model.path_of(BENTO_MODEL_SUBDIR))
    return str(model.tag)


def build_bento(project_dir: str | Path, model_tag: str) -> str:
    """Build the Bento described by `project_dir/bentofile.yaml`; return the Bento tag.

    `model_tag` must be the model the bentofile references (`<name>:latest` resolves to the one
    just exported); it is recorded as a label so the Bento names the exact model it carries.
    """
    project_dir = Path(project_dir)
    bento = bentoml.bentos.build_bentofile(
        str(project_dir / BENTOFILE),
        build_ctx=str(project_dir),
        labels={"model_tag": model_tag},
    )
    models = {str(info.tag) for info in bento.info.all_models}
    if model_tag not in models:
        raise RuntimeError(
            f"the Bento {bento.tag} carries {sorted(models)}, not {model_tag}; a newer model "
            f"was exported in between, or bentofile.yaml references another model"
        )
    return str(bento.tag)
