"""The vocabulary of a provenance chain: a link, a trace of links, and the check of a stored file.

A link is `ok`, `broken` (found, but it disagrees with what was recorded: a hash mismatch, two
stores naming different digests) or `missing` (the record points at nothing). Kinds and statuses
are spelled here as the JSON shows them. The module imports nothing heavy, so the CLI reads the
names from here without slowing every command's start.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK, BROKEN, MISSING = "ok", "broken", "missing"
# Kinds of link, in the order a trace walks them.
PREDICTION, MODEL_VERSION, PROMOTION, EVALUATION = (
    "prediction", "model_version", "promotion", "evaluation",
)  # fmt: skip
MLFLOW_RUN, TRAINING_SET, FEATURES, RAW_BATCH = (
    "mlflow_run", "training_set", "features", "raw_batch",
)  # fmt: skip


@dataclass(frozen=True)
class Link:
    """One step of the chain: what it is, whether it holds, why not, and what was found."""

    kind: str
    id: str
    status: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # `kind:id` of the link that pointed here, so the chain can be drawn as a tree.
    via: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Trace:
    """Every link from a prediction back to its raw batches, in walking order."""

    prediction_id: str
    links: tuple[Link, ...]

    @property
    def ok(self) -> bool:
        return all(link.status == OK for link in self.links)

    def problems(self) -> list[Link]:
        return [link for link in self.links if link.status != OK]

    def of_kind(self, kind: str) -> list[Link]:
        return [link for link in self.links if link.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "ok": self.ok,
            "links": [asdict(link) for link in self.links],
        }


def hash_mismatch(path: str | Path, actual: str, expected: str) -> str:
    """Why a file whose bytes changed since they were recorded is broken; empty if they did not."""
    if actual == expected:
        return ""
    return f"hash mismatch: {path} has SHA-256 {actual}, {expected} was recorded"


def file_link(
    kind: str,
    ident: str,
    path: str | Path,
    expected: str,
    details: dict[str, Any],
    via: str | None,
) -> Link:
    """A stored file checked against the SHA-256 recorded for it."""
    from lifecycle_assets import storage  # fsspec: only when a file is checked

    path = storage.path(path)  # a local file or an object in the shared store
    details = {**details, "path": str(path), "sha256": expected}
    if not path.is_file():
        return Link(kind, ident, MISSING, f"file {path} does not exist", details, via)
    from lifecycle_assets.registry.artifacts import sha256_file  # skops: only when hashing

    actual = sha256_file(path)
    details["actual_sha256"] = actual
    reason = hash_mismatch(path, actual, expected)
    if reason:
        return Link(kind, ident, BROKEN, reason, details, via)
    return Link(kind, ident, OK, "", details, via)
