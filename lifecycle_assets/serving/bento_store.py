"""Bundle a registered version into the BentoML model store and build the Bento around it.

A built Bento must serve without the registry (DESIGN: "a built Bento is self-contained"), so the
MLflow model directory is copied into a BentoML model whose metadata carries the registry
provenance (`ModelRef.to_dict()`); the service in `bento` mode reads both back and re-checks the
SHA-256 before loading. Every build setting lives in `bentofile.yaml`, not here, except which
model versions a Bento carries (the champions of the project's models at build time) and the
versions of its Python packages (from `constraints.txt`, see `bento_requirements`). In team mode
the built Bento is exported to object storage, so any host can import and serve it.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bentoml
import mlflow
import yaml
from bentoml.exceptions import NotFound

from lifecycle_assets import config, storage
from lifecycle_assets.compiled.artifact import STATUS_OK, TAG_COMPILED_PATH, TAG_COMPILED_STATUS
from lifecycle_assets.registry.artifacts import sha256_file
from lifecycle_assets.registry.models import download_model
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.bento_requirements import CONSTRAINTS, pinned_requirements
from lifecycle_assets.serving.model_source import (
    BENTO_COMPILED_SUBDIR,
    BENTO_MODEL_SUBDIR,
    BENTO_REF_KEY,
)

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
            if ref.tags.get(TAG_COMPILED_STATUS) == STATUS_OK:
                # The compiled form travels with the Bento; its SHA-256 is re-checked on load.
                mlflow.artifacts.download_artifacts(
                    f"runs:/{ref.run_id}/{ref.tags[TAG_COMPILED_PATH]}",
                    dst_path=model.path_of(BENTO_COMPILED_SUBDIR),
                )
    return str(model.tag)


def exported_tag(ref: ModelRef) -> str:
    """The BentoML model holding this registered version, exported now if it is not yet.

    Matched by version and artifact SHA-256: a model store may outlive a registry, and another
    registry's v1 is another model.
    """
    try:
        stored = bentoml.models.list(ref.name)
    except NotFound:  # BentoML's answer when no model of that name was ever exported
        stored = []
    for model in stored:
        if (
            model.info.labels.get("model_version") == ref.version
            and model.info.metadata.get(config.TAG_ARTIFACT_SHA256) == ref.artifact_sha256
        ):
            return str(model.tag)
    return export_version(ref)


def build_bento(project_dir: str | Path, model_tags: list[str]) -> str:
    """Build the Bento described by `project_dir/bentofile.yaml`, carrying exactly
    `model_tags`; return the Bento tag.

    Every setting comes from the bentofile except `models`, which versions a Bento carries
    (decided at build time, the current champions; the exact tags are recorded as labels), and
    the versions of the packages it names, which `constraints.txt` pins.
    """
    project_dir = Path(project_dir)
    options = bento_options(project_dir)
    options["models"] = list(model_tags)
    with tempfile.TemporaryDirectory() as tmp:
        bentofile = Path(tmp) / BENTOFILE
        bentofile.write_text(yaml.safe_dump(options, sort_keys=False))
        bento = bentoml.bentos.build_bentofile(
            str(bentofile),
            build_ctx=str(project_dir),
            labels={"models": ",".join(model_tags)},
        )
    carried = {str(info.tag) for info in bento.info.all_models}
    if not set(model_tags) <= carried:
        raise RuntimeError(f"the Bento {bento.tag} carries {sorted(carried)}, not {model_tags}")
    return str(bento.tag)


def bento_options(project_dir: str | Path) -> dict:
    """The bentofile's settings with its package names pinned from the constraints file."""
    project_dir = Path(project_dir)
    options = yaml.safe_load((project_dir / BENTOFILE).read_text())
    python = options.setdefault("python", {})
    python["packages"] = pinned_requirements(python.get("packages", []), project_dir / CONSTRAINTS)
    return options


@dataclass(frozen=True)
class ExportedBento:
    """A Bento archive in shared storage and the SHA-256 of its bytes."""

    url: str
    sha256: str


def export_to_storage(bento_tag: str, folder: storage.Location) -> ExportedBento:
    """Export the Bento to `<folder>/<name>-<version>.bento` through the storage door.

    `bentoml.export_bento` would open S3 through its own fsspec call, without the endpoint of
    the settings; it writes a local archive instead, which is hashed and uploaded here.
    """
    name = bento_tag.replace(":", "-") + ".bento"
    with tempfile.TemporaryDirectory(prefix="lifecycle-bento-") as tmp:
        archive = bentoml.export_bento(bento_tag, str(Path(tmp) / name))
        sha256 = sha256_file(archive)
        url = str(storage.path(folder) / name)
        storage.put_file(archive, url)
    return ExportedBento(url, sha256)


def import_from_storage(exported: ExportedBento) -> str:
    """Import an exported Bento into this host's store after checking its SHA-256; its tag.

    A Bento already in the store is left as it is (same tag, same build).
    """
    with tempfile.TemporaryDirectory(prefix="lifecycle-bento-") as tmp:
        archive = Path(tmp) / exported.url.rsplit("/", 1)[-1]
        storage.get_file(exported.url, archive)
        actual = sha256_file(archive)
        if actual != exported.sha256:
            raise RuntimeError(f"{exported.url} has SHA-256 {actual}, expected {exported.sha256}")
        bento = bentoml.Bento.import_from(str(archive))
        try:
            return str(bentoml.get(bento.tag).tag)
        except NotFound:
            return str(bento.save().tag)


def serve_command(bento_tag: str) -> str:
    """The shell line that serves the built Bento as printed, from any folder: the BentoML
    home holding it (a Bento lives at `<home>/bentos/<name>/<version>`) and this venv's
    `bentoml`, both absolute."""
    home = Path(bentoml.get(bento_tag).path).parents[2]
    executable = Path(sys.executable).with_name("bentoml")
    return (
        f"BENTOML_HOME={shlex.quote(str(home))} {shlex.quote(str(executable))} serve "
        f"{shlex.quote(bento_tag)} --host 127.0.0.1"
    )
