"""Serve a registered version from where the artifact store keeps it, without MLflow or skops.

Why: a worker that imported MLflow (1.2-2 s), opened its tracking store and downloaded the model
through it, then imported skops and scikit-learn (1-2 s) to load a pipeline that the compiled form
makes unused, took 14 s to be ready where the target is 5 s. What a worker needs is the registry's
rows (read-only through `registry/reader.py`), the files' SHA-256 against the registered tags,
the spec, and the compiled form. So, when the registry is read directly and the artifact store is
a local folder:

- the skops file is hashed in place and must equal `artifact_sha256` (else `IntegrityError`);
- the compiled file is read once, hashed and parsed from the same bytes (`read_compiled`);
- the pipeline is loaded with skops on the allow-list only when something needs it: at once when
  scikit-learn scores the version, or when registration did not prove the allow-listed load
  (`artifact_load_proof`, the same rule every alias move applies, `registry/verify.py`);
  otherwise on first use, its SHA-256 checked again then. Nothing is ever unpickled.

Any other store (object storage, MLflow's proxied artifacts, a tracking server) takes the road
through MLflow (`model_source.served_from_registry`).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.artifacts import check_sha256, load_pipeline
from lifecycle_assets.registry.mlflow_reader import MlflowReader
from lifecycle_assets.registry.reader import RegistryReader, SqliteReader, sqlite_reader
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.spec import ModelSpec

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

_MLFLOW_READERS: dict[str, MlflowReader] = {}
_MLFLOW_LOCK = threading.Lock()
# One read-only SQLite connection per thread and store: a connection belongs to the thread that
# opened it, and the watcher, the admin route and start-up read from different ones.
_SQLITE_READERS = threading.local()


def registry_reader(settings: Settings) -> RegistryReader:
    """The registry read-only: this thread's `SqliteReader` on a SQLite store (each statement
    reads the latest commit: no transaction stays open), else one MLflow-backed reader per
    tracking URI, kept for the process."""
    uri = settings.mlflow_tracking_uri
    readers: dict[str, RegistryReader] = _SQLITE_READERS.__dict__.setdefault("by_uri", {})
    if uri in readers:
        return readers[uri]
    direct = sqlite_reader(uri)
    if isinstance(direct, SqliteReader):
        readers[uri] = direct
    if direct is not None:
        return direct
    with _MLFLOW_LOCK:
        if uri not in _MLFLOW_READERS:
            from lifecycle_assets.registry.tracking import configure_mlflow

            _MLFLOW_READERS[uri] = MlflowReader(configure_mlflow(settings))
        return _MLFLOW_READERS[uri]


def existing_version(reader: RegistryReader, name: str, version: str) -> ModelRef:
    """The version's current registry entry; LookupError when it is gone."""
    ref = reader.version(name, version)
    if ref is None:
        raise LookupError(f"{name} v{version} is not in the registry")
    return ref


@dataclass(frozen=True)
class VerifiedModel:
    """A registered version whose skops file matched its SHA-256 where it is stored.

    Answers as `registry.models.LoadedModel` does (`ref`, `spec`, `pipeline`); the pipeline is
    `preloaded` or loaded on first use (SHA-256 checked again, skops allow-list).
    """

    ref: ModelRef
    spec: ModelSpec
    skops_path: Path
    preloaded: Any = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def pipeline(self) -> Pipeline:
        if self.preloaded is not None:
            return self.preloaded
        return load_pipeline(self.skops_path, self.ref.artifact_sha256)

    def preload(self) -> VerifiedModel:
        """The same model with its pipeline loaded now (kept across `dataclasses.replace`)."""
        return VerifiedModel(self.ref, self.spec, self.skops_path, self.pipeline)


def spec_of(model_dir: Path) -> ModelSpec:
    """The spec registration wrote into the model's `MLmodel` metadata (read as MLflow does:
    YAML, safe loader; libyaml's when installed, 60 ms faster)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load((model_dir / "MLmodel").read_text(), Loader=loader) or {}
    return ModelSpec.model_validate((document.get("metadata") or {})["spec"])


def verified_in_place(ref: ModelRef, model_dir: Path) -> VerifiedModel:
    """The version's skops file checked against `artifact_sha256` where it is stored."""
    path = model_dir / (ref.tags.get(config.TAG_ARTIFACT_PATH) or config.SKOPS_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the artifact store")
    check_sha256(path, ref.artifact_sha256)
    return VerifiedModel(ref=ref, spec=spec_of(model_dir), skops_path=path)


def compiled_file(root: Path, relative: str, _tmp: str) -> Path | None:
    """`attach_compiled`'s fetch for a local run folder: the stored file itself."""
    path = root / relative
    return path if relative and path.is_file() else None
