"""Find, fetch and verify the model a service process serves.

Which models: `LIFECYCLE_MODEL_NAMES` (comma-separated), else in a Bento the models it carries,
else every model of the project's specs (`spec.configured_specs`) that has a champion. Two
sources, chosen by `LIFECYCLE_MODEL_SOURCE`:
- `registry` (default): the version holding the `champion` alias in the MLflow registry (read
  through `registry/reader.py`), checked against the SHA-256 recorded at registration where the
  artifact store keeps it (`in_place.py`), or downloaded through MLflow when only MLflow
  reaches the store;
- `bento`: the model bundled in the BentoML model store (inside a built Bento, the Bento's own
  store), so a Bento serves without any registry; its metadata carries the registry provenance
  and the same SHA-256 check runs on the bundled file.
A champion that cannot be verified is replaced by the last good version the alias ledger knows
(`fallback.py`) and reported as a degradation; only when no version verifies does start-up fail,
with a message saying what to do, instead of a service that is up but cannot answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lifecycle_assets import config
from lifecycle_assets.compiled.artifact import (
    STATUS_OK,
    TAG_COMPILED_PATH,
    TAG_COMPILED_REASON,
    TAG_COMPILED_SHA256,
    TAG_COMPILED_STATUS,
    read_compiled,
)
from lifecycle_assets.compiled.model import CompiledModel
from lifecycle_assets.compiled.rows import RowEncoder
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.verify import load_proven, locate
from lifecycle_assets.serving.in_place import (
    VerifiedModel,
    compiled_file,
    existing_version,
    registry_reader,
    verified_in_place,
)
from lifecycle_assets.serving.lost_champion import LostChampion, refuse_lost_champion
from lifecycle_assets.serving.model_env import (
    ENV_MODEL_NAMES,
    ENV_MODEL_SOURCE,
    ModelSourceError,
    bento_manifest,
    explicit_names,
    source_mode,
)
from lifecycle_assets.spec import configured_specs

if TYPE_CHECKING:
    from lifecycle_assets.registry.models import LoadedModel
    from lifecycle_assets.serving.fallback import Degradation

logger = logging.getLogger(__name__)

# `sklearn` serves every model with scikit-learn even when a compiled form is proven (a switch
# for operators and the benchmark's comparison); `auto` (default) serves the compiled form.
ENV_SCORER = "LIFECYCLE_SCORER"
# Subfolder of a BentoML model that holds the MLflow model directory (MLmodel, model.skops).
BENTO_MODEL_SUBDIR = "mlflow_model"
# Subfolder of a BentoML model that holds the compiled file, when the version has one.
BENTO_COMPILED_SUBDIR = "compiled"
# Key of a BentoML model's metadata that holds `ModelRef.to_dict()`.
BENTO_REF_KEY = "model_ref"

SourceMode = Literal["registry", "bento"]


@dataclass(frozen=True)
class ServedModel:
    """A verified model plus where it came from, for `/metadata` and every prediction log row.

    `compiled` is the version's compiled form when it is registered with proven parity and its
    SHA-256 matches the one recorded with that proof; otherwise scikit-learn scores and
    `scorer_reason` says why.
    """

    loaded: LoadedModel | VerifiedModel
    source: SourceMode
    loaded_at: str
    bento_model_tag: str | None = None
    # Set when the alias holder could not serve and this is the last good version instead.
    degradation: Degradation | None = None
    compiled: CompiledModel | None = None
    scorer_reason: str = ""

    @property
    def ref(self) -> ModelRef:
        return self.loaded.ref

    @functools.cached_property
    def row_encoder(self) -> RowEncoder:
        return RowEncoder(self.loaded.spec)

    def describe_scorer(self) -> dict[str, str]:
        """What scores this model, for `/metadata`: `compiled` or `sklearn`, and why."""
        return {
            "scorer": "compiled" if self.compiled is not None else "sklearn",
            "reason": self.scorer_reason,
        }


def ref_from_dict(data: Mapping[str, Any]) -> ModelRef:
    """Rebuild a `ModelRef` from `ModelRef.to_dict()` (as stored in BentoML model metadata)."""
    return ModelRef(
        name=str(data["name"]),
        version=str(data["version"]),
        run_id=str(data.get("run_id", "")),
        source=str(data.get("source", "")),
        tags={str(k): str(v) for k, v in dict(data.get("tags", {})).items()},
        aliases=tuple(data.get("aliases", ())),
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def load_from_registry(name: str, settings: Settings) -> ServedModel:
    """The `champion` version of `name`, verified; if it cannot serve, the last good one."""
    from lifecycle_assets.registry.ledger import Ledger
    from lifecycle_assets.serving.fallback import choose

    reader = registry_reader(settings)
    ref = reader.resolve(name, config.CHAMPION_ALIAS)
    ledger = Ledger.for_settings(settings)
    if ref is None:
        refuse_lost_champion(ledger, reader, name)  # never another version in its place
        raise ModelSourceError(
            f"model {name!r} has no {config.CHAMPION_ALIAS!r} version in the registry at "
            f"{settings.mlflow_tracking_uri}; train and promote one first, or set "
            f"{ENV_MODEL_SOURCE}=bento to serve a bundled model"
        )
    choice = choose(
        name,
        config.CHAMPION_ALIAS,
        ref,
        ledger,
        functools.partial(existing_version, reader, name),
    )
    if choice.degradation is None:
        return choice.served
    return dataclasses.replace(choice.served, degradation=choice.degradation)


def served_from_registry(ref: ModelRef) -> ServedModel:
    """A registered version, SHA-256 verified, ready to serve: read where the artifact store
    keeps it when that is a local folder (`in_place.py`), else downloaded through MLflow."""
    located = locate(ref, registry_reader(Settings.from_env()))
    loaded: LoadedModel | VerifiedModel
    if located is None:
        from lifecycle_assets.registry.models import download_compiled, load_version

        loaded = load_version(ref)
        compiled, reason = attach_compiled(loaded, lambda _path, dst: download_compiled(ref, dst))
    else:
        model_dir, compiled_root = located
        loaded = verified_in_place(ref, model_dir)
        fetch = functools.partial(compiled_file, compiled_root) if compiled_root else _no_file
        compiled, reason = attach_compiled(loaded, fetch)
        if compiled is None or not load_proven(ref.tags):
            # scikit-learn scores it, or registration did not prove the allow-listed load:
            # load it now, as every alias move would.
            loaded = loaded.preload()
    return ServedModel(
        loaded=loaded,
        source="registry",
        loaded_at=_now(),
        compiled=compiled,
        scorer_reason=reason,
    )


def _no_file(_: str, __: str) -> None:
    return None


def attach_compiled(
    loaded: LoadedModel | VerifiedModel, fetch: Callable[[str, str], Path | None]
) -> tuple[CompiledModel | None, str]:
    """The version's compiled form and why it serves, or None and why scikit-learn does.

    `fetch(artifact_path, tmp_dir)` returns the local copy of the compiled file (None when it
    is absent). Any failure falls back to scikit-learn: the pipeline is the source of truth.
    """
    tags = loaded.ref.tags
    if os.environ.get(ENV_SCORER, "auto") == "sklearn":
        return None, f"scikit-learn chosen by {ENV_SCORER}=sklearn"
    status = tags.get(TAG_COMPILED_STATUS)
    if status is None:
        return None, "no compiled artifact registered with this version"
    if status != STATUS_OK:
        return None, f"compiled {status} at registration: {tags.get(TAG_COMPILED_REASON, '')}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = fetch(tags.get(TAG_COMPILED_PATH, ""), tmp)
            if local is None:
                return None, "compiled artifact missing"
            # The bytes whose parity registration proved, or refused: the SHA-256 is the proof
            # (re-proving parity here cost about 0.4 s of CPU per load and per swap).
            compiled = read_compiled(local, tags.get(TAG_COMPILED_SHA256, ""))
    except Exception as error:
        logger.warning(
            "%s v%s served by scikit-learn: %s", loaded.ref.name, loaded.ref.version, error
        )
        return None, f"compiled artifact refused: {error}"
    return compiled, f"compiled ({tags.get(TAG_COMPILED_REASON, 'parity proven')})"


def bundled_model_tag(name: str) -> str:
    """The exact model a Bento was built with; `name:latest` outside a Bento.

    A locally served Bento reads models from the shared store, where `latest` may already be a
    newer export: the Bento must serve what it was built and tested with.
    """
    manifest = bento_manifest() or {}
    for model in manifest.get("models", []):
        if str(model.get("tag", "")).startswith(f"{name}:"):
            return str(model["tag"])
    return f"{name}:latest"


def load_from_bento_store(name: str) -> ServedModel:
    """The BentoML model `name`: inside a Bento the one it was built with, else the latest."""
    import bentoml
    from bentoml.exceptions import NotFound

    from lifecycle_assets.registry.models import read_model_dir

    try:
        model = bentoml.models.get(bundled_model_tag(name))
    except NotFound as error:
        raise ModelSourceError(
            f"no BentoML model {name!r} in the model store; export a registered version "
            f"with lifecycle_assets.serving.bento_store.export_version first"
        ) from error
    metadata = model.info.metadata
    if BENTO_REF_KEY not in metadata:
        raise ModelSourceError(f"BentoML model {model.tag} carries no {BENTO_REF_KEY!r} metadata")
    ref = ref_from_dict(metadata[BENTO_REF_KEY])
    loaded = read_model_dir(ref, model.path_of(BENTO_MODEL_SUBDIR))

    def bundled(path: str, _: str) -> Path | None:
        local = Path(model.path_of(BENTO_COMPILED_SUBDIR)) / Path(path).name
        return local if local.exists() else None

    compiled, reason = attach_compiled(loaded, bundled)
    return ServedModel(
        loaded=loaded,
        source="bento",
        loaded_at=_now(),
        bento_model_tag=str(model.tag),
        compiled=compiled,
        scorer_reason=reason,
    )


def _bundled_names(env: Mapping[str, str]) -> list[str]:
    """The models a Bento carries; outside a Bento, the project's models in the model store."""
    manifest = bento_manifest()
    if manifest is not None:
        return [str(m["tag"]).split(":")[0] for m in manifest.get("models", []) if m.get("tag")]
    import bentoml

    stored = {model.tag.name for model in bentoml.models.list()}
    return [spec.name for spec in configured_specs(dict(env)) if spec.name in stored]


def load_served_models(
    environ: Mapping[str, str] | None = None, lost: dict[str, str] | None = None
) -> list[ServedModel]:
    """Load every model the environment asks for (see the module docstring), in order.

    Models named explicitly must all load. Of the project's models taken by default, one
    without a champion yet is skipped with a warning (a portfolio where one model is still in
    training must not stop the others from serving); none at all is an error. One whose
    champion the registry lost (`LostChampion`) is skipped with an error, and its reason put
    in `lost`, for `/readyz` and `/metadata` to report.
    """
    env = os.environ if environ is None else environ
    source = source_mode(env)
    if source not in ("registry", "bento"):
        raise ModelSourceError(f"{ENV_MODEL_SOURCE} must be 'registry' or 'bento', not {source!r}")
    explicit = explicit_names(env)
    if source == "bento":
        names = explicit or _bundled_names(env)
        if not names:
            raise ModelSourceError(
                f"no model of the project is in the BentoML model store; export one with "
                f"lifecycle_assets.serving.bento_store.export_version, or set {ENV_MODEL_NAMES}"
            )
        return [load_from_bento_store(name) for name in names]
    settings = Settings.from_env(dict(env))
    if explicit:
        return [load_from_registry(name, settings) for name in explicit]
    served, missing = [], []
    for spec in configured_specs(dict(env)):
        try:
            served.append(load_from_registry(spec.name, settings))
        except LostChampion as error:
            logger.error("NOT SERVING: %s", error)
            missing.append(str(error))
            if lost is not None:
                lost[spec.name] = str(error)
        except ModelSourceError as error:
            logger.warning("not serving: %s", error)
            missing.append(str(error))
    if not served:
        raise ModelSourceError("no model to serve: " + "; ".join(missing))
    return served


def awaited_models(served: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The project's models a registry-mode service should start serving once they get a
    champion: those it serves by default (no explicit names) and could not load at start-up."""
    env = os.environ if environ is None else environ
    if source_mode(env) != "registry" or explicit_names(env):
        return []
    return [spec.name for spec in configured_specs(dict(env)) if spec.name not in served]


def load_served_model(environ: Mapping[str, str] | None = None) -> ServedModel:
    """The first model `load_served_models` would serve (the service's default route)."""
    return load_served_models(environ)[0]
