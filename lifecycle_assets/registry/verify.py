"""Can this registered version serve? The one check every alias move and the service run first.

A version may hold an alias only when what it would serve is exactly what was registered: its
artifact is present, the `artifact_sha256` tag is there and matches the file, skops loads it with
the allow-list, and a compiled form (when one is tagged) matches its own SHA-256. Checking at the
alias move, not only in the service, keeps the registry from naming a version that cannot serve
(the registry saying v2 while the service keeps v1, or a service that cannot start at all).

The tag checks (`refusal`) and the file checks (`dir_refusal`) are separate so a service that
has already downloaded a version can reuse them without a second download.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from lifecycle_assets import config
from lifecycle_assets.registry.artifacts import (
    IntegrityError,
    UntrustedArtifactError,
    load_pipeline,
    sha256_file,
)
from lifecycle_assets.registry.models import ModelRef, download_model, get_version

# Set by reconcile on a version a crash left without its required tags: it can never serve.
TAG_INCOMPLETE = "lifecycle.incomplete"
# A compiled inference form logged beside the skops file: its path in the model directory
# and its SHA-256. Absent tags mean the version has no compiled form (scikit-learn serves).
TAG_COMPILED_PATH = "compiled_artifact_path"
TAG_COMPILED_SHA256 = "compiled_sha256"
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
    if bool(tags.get(TAG_COMPILED_PATH)) != bool(tags.get(TAG_COMPILED_SHA256)):
        return f"`{TAG_COMPILED_PATH}` and `{TAG_COMPILED_SHA256}` must be tagged together"
    return None


def _file_refusal(path: Path, expected: str, what: str) -> str | None:
    if not path.is_file():
        return f"its {what} is missing from the artifact store"
    actual = sha256_file(path)
    if actual != expected:
        return f"its {what} has SHA-256 {actual[:12]}…, registered as {expected[:12]}…"
    return None


def dir_refusal(tags: Mapping[str, str], model_dir: str | Path) -> str | None:
    """Why the downloaded files do not match the tags (SHA-256 of skops and compiled form)."""
    model_dir = Path(model_dir)
    skops = model_dir / (tags.get(config.TAG_ARTIFACT_PATH) or config.SKOPS_FILE)
    reason = _file_refusal(skops, tags[config.TAG_ARTIFACT_SHA256], "model file")
    if reason is None and tags.get(TAG_COMPILED_PATH):
        compiled = model_dir / tags[TAG_COMPILED_PATH]
        reason = _file_refusal(compiled, tags[TAG_COMPILED_SHA256], "compiled form")
    return reason


def verify_dir(ref: ModelRef, model_dir: str | Path) -> Verification:
    """Verify a downloaded model directory against the version's tags, then load it."""
    reason = refusal(ref.tags) or dir_refusal(ref.tags, model_dir)
    if reason is None:
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


def verify_version(
    client: MlflowClient, name: str, version: str, *, ref: ModelRef | None = None
) -> Verification:
    """Verify a registered version end to end: tags, download, hashes, allow-listed load."""
    version = str(version)
    try:
        ref = ref or get_version(client, name, version)
    except MlflowException:
        return Verification(name, version, ["it does not exist in the registry"])
    reason = refusal(ref.tags)
    if reason is not None:
        return Verification(name, version, [reason])
    with tempfile.TemporaryDirectory(prefix="lifecycle-verify-") as tmp:
        try:
            model_dir = download_model(ref, tmp)
        except (MlflowException, OSError):
            return Verification(name, version, ["its artifact is missing from the artifact store"])
        return verify_dir(ref, model_dir)
