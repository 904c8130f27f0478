"""Can this registered version serve? The one check every alias move and the service run first.

A version may hold an alias only when what it would serve is exactly what was registered: its
artifact is present, the `artifact_sha256` tag is there and matches the file, skops loads it with
the allow-list, and a compiled form (when one is tagged) matches its own SHA-256. Checking at the
alias move, not only in the service, keeps the registry from naming a version that cannot serve
(the registry saying v2 while the service keeps v1, or a service that cannot start at all).

The tag checks (`refusal`) and the file checks (`dir_refusal`) are separate so a service that
has already downloaded a version can reuse them without a second download.

An alias move (`verify_version`) hashes the files where the artifact store keeps them (a
download only for a store MLflow alone reaches), and skips the second allow-listed load when
registration proved it (`artifact_load_proof` equal to today's `load_proof()`): a file whose
SHA-256 equals the registered one is the very bytes that loaded then, under the same rules. A
version without that proof (registered before it existed, or under another allow-list) is
loaded as before. This keeps scikit-learn out of `promote`, `rollback` and `canary`, and MLflow
too when the registry is a SQLite file and the artifacts a local folder (`registry_client`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.compiled.tags import STATUS_OK as COMPILED_OK
from lifecycle_assets.compiled.tags import (
    TAG_COMPILED_PATH,
    TAG_COMPILED_SHA256,
    TAG_COMPILED_STATUS,
)
from lifecycle_assets.registry.artifacts import (
    IntegrityError,
    UntrustedArtifactError,
    load_pipeline,
    load_proof,
    sha256_file,
)
from lifecycle_assets.registry.reader import RegistryReader, local_or_stored, reader_of
from lifecycle_assets.registry.refs import ModelRef

# Set by reconcile on a version a crash left without its required tags: it can never serve.
TAG_INCOMPLETE = "lifecycle.incomplete"
# The compiled inference form's tags are `compiled.artifact`'s: with status `ok`, a file at
# `compiled_path` among the version's run artifacts whose SHA-256 is `compiled_sha256`. Any other
# status (or none) means scikit-learn serves it.
# Tags a complete registration always carries (written in the registering call itself).
REQUIRED_TAGS = (config.TAG_ARTIFACT_SHA256,)


@dataclass(frozen=True)
class Verification:
    """The verdict on one version: `ok`, or the reasons it must not serve."""

    name: str
    version: str
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def message(self) -> str:
        """One line for a person: why the version was refused."""
        return f"{self.name} v{self.version} cannot serve: " + "; ".join(self.reasons)

    def champion_message(self) -> str:
        """The gate's reason when this version holds `champion` and fails: no challenger can be
        compared against numbers that may not be the registered model's, and the remedy is an
        alias move to a version that verifies, which only an operator should choose."""
        return (
            f"champion {self.name} v{self.version} fails verification ("
            + "; ".join(self.reasons)
            + f"): run `lifecycle rollback {self.name}` (or `lifecycle promote {self.name} "
            "VERSION`) to restore a verified champion, then train again"
        )


def is_incomplete(tags: Mapping[str, str]) -> bool:
    """A version that lacks a required tag, or that reconcile marked as left incomplete."""
    marked = str(tags.get(TAG_INCOMPLETE, "")).lower() == "true"
    return marked or any(not tags.get(tag) for tag in REQUIRED_TAGS)


def refusal(tags: Mapping[str, str]) -> str | None:
    """Why the version's tags alone rule it out, or None. No file is read."""
    if str(tags.get(TAG_INCOMPLETE, "")).lower() == "true":
        return "its registration was interrupted (marked incomplete)"
    if not tags.get(config.TAG_ARTIFACT_SHA256):
        return f"no `{config.TAG_ARTIFACT_SHA256}` tag (an incomplete registration)"
    if has_compiled(tags) and not (tags.get(TAG_COMPILED_PATH) and tags.get(TAG_COMPILED_SHA256)):
        return f"its compiled form is tagged `{COMPILED_OK}` without its path and SHA-256"
    return None


def model_refusal(ref: ModelRef) -> str | None:
    """Why `ref` belongs to another model, or None: a version registered under this name
    from another model's files (the MLflow UI, `create_model_version`) would serve another
    model's schema and task on this model's route."""
    registered_for = ref.tags.get(config.TAG_SPEC_NAME)
    if registered_for is not None and registered_for != ref.name:
        return f"it was trained for model {registered_for!r}, not {ref.name!r}"
    return None


def load_proven(tags: Mapping[str, str]) -> bool:
    """Whether registration loaded the stored file under today's allow-list and skops."""
    return bool(tags.get(config.TAG_ARTIFACT_LOAD_PROOF)) and (
        tags[config.TAG_ARTIFACT_LOAD_PROOF] == load_proof()
    )


def has_compiled(tags: Mapping[str, str]) -> bool:
    """Whether the version claims a compiled form that serves (parity proven)."""
    return tags.get(TAG_COMPILED_STATUS) == COMPILED_OK


def _file_refusal(path: Path, expected: str, what: str) -> str | None:
    if not path.is_file():
        return f"its {what} is missing from the artifact store"
    actual = sha256_file(path)
    if actual != expected:
        return f"its {what} has SHA-256 {actual[:12]}…, registered as {expected[:12]}…"
    return None


def dir_refusal(tags: Mapping[str, str], model_dir: str | Path) -> str | None:
    """Why the downloaded model directory does not match the `artifact_sha256` tag."""
    skops = Path(model_dir) / (tags.get(config.TAG_ARTIFACT_PATH) or config.SKOPS_FILE)
    return _file_refusal(skops, tags[config.TAG_ARTIFACT_SHA256], "model file")


def compiled_refusal(tags: Mapping[str, str], compiled_file: str | Path | None) -> str | None:
    """Why the downloaded compiled file (None: not found) does not match its tag."""
    if not has_compiled(tags):
        return None
    if compiled_file is None:
        return "its compiled form is missing from the artifact store"
    return _file_refusal(Path(compiled_file), tags[TAG_COMPILED_SHA256], "compiled form")


def verify_dir(
    ref: ModelRef,
    model_dir: str | Path,
    compiled_file: str | Path | None = None,
    *,
    trust_proof: bool = False,
) -> Verification:
    """Verify a downloaded version (model directory, compiled file) against its tags, then
    load it with the allow-list (unless `trust_proof` and registration proved the load)."""
    reason = (
        refusal(ref.tags)
        or model_refusal(ref)
        or dir_refusal(ref.tags, model_dir)
        or compiled_refusal(ref.tags, compiled_file)
    )
    if reason is None and not (trust_proof and load_proven(ref.tags)):
        skops = Path(model_dir) / (ref.tags.get(config.TAG_ARTIFACT_PATH) or config.SKOPS_FILE)
        try:
            load_pipeline(skops, ref.artifact_sha256)
        except UntrustedArtifactError:
            reason = "its model file holds types outside the skops allow-list"
        except IntegrityError:  # changed between the hash above and the load
            reason = "its model file changed while it was being verified"
        except Exception as error:  # any load failure means it cannot serve
            reason = f"its model file does not load ({type(error).__name__})"
    return Verification(ref.name, ref.version, [reason] if reason else [])


def _local(uri: str | None) -> Path | None:
    """A local folder for an artifact URI; None when it must be downloaded (object storage,
    MLflow's proxied store)."""
    location = local_or_stored(uri)
    return Path(location) if location and "://" not in location else None


def locate(ref: ModelRef, reader: RegistryReader) -> tuple[Path, Path | None] | None:
    """The version's model folder and (when it has a compiled form) its run's artifact root,
    both local folders; None when either lives where only MLflow reaches."""
    model_dir = _local(reader.model_location(ref))
    if model_dir is None:
        return None
    if not has_compiled(ref.tags):
        return model_dir, None
    run = reader.run(ref.run_id) if ref.run_id else None
    root = _local(run.artifact_uri) if run is not None else None
    return None if root is None else (model_dir, root)


def _verify_downloaded(ref: ModelRef, tracking_uri: str | None) -> Verification:
    import mlflow
    from mlflow.exceptions import MlflowException

    from lifecycle_assets.registry.models import download_compiled, download_model

    if tracking_uri:  # MLflow's module-level downloads resolve the caller's store
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)

    with tempfile.TemporaryDirectory(prefix="lifecycle-verify-") as tmp:
        (Path(tmp) / "model").mkdir()
        (Path(tmp) / "compiled").mkdir()
        try:
            model_dir = download_model(ref, Path(tmp) / "model")
        except (MlflowException, OSError):
            return Verification(
                ref.name, ref.version, ["its artifact is missing from the artifact store"]
            )
        compiled = None
        if has_compiled(ref.tags):
            try:
                compiled = download_compiled(ref, Path(tmp) / "compiled")
            except (MlflowException, OSError):
                compiled = None  # `verify_dir` names the missing compiled file
        return verify_dir(ref, model_dir, compiled, trust_proof=True)


def verify_version(
    client: Any, name: str, version: str, *, ref: ModelRef | None = None
) -> Verification:
    """Verify a registered version end to end: tags, the stored files' hashes, and the
    allow-listed load (done at registration when `artifact_load_proof` says so).

    Reads go through `registry.reader.reader_of(client)`; the files are hashed in place when
    the artifact store is a local folder (no MLflow import), else downloaded through MLflow.
    """
    version = str(version)
    reader = reader_of(client)
    tracking_uri = getattr(client, "tracking_uri", None)
    ref = ref or reader.version(name, version)
    if ref is None:
        return Verification(name, version, ["it does not exist in the registry"])
    reason = refusal(ref.tags) or model_refusal(ref)
    if reason is not None:
        return Verification(name, version, [reason])
    located = locate(ref, reader)
    if located is None:
        return _verify_downloaded(ref, tracking_uri)
    model_dir, root = located
    compiled: Path | None = None
    if root is not None:
        compiled = root / ref.tags[TAG_COMPILED_PATH]
        compiled = compiled if compiled.is_file() else None
    if not model_dir.is_dir():
        return Verification(name, version, ["its artifact is missing from the artifact store"])
    return verify_dir(ref, model_dir, compiled, trust_proof=True)
