"""What produced a stored partition, so that a run knows by itself when to read it again.

A partition's fingerprint joins three things: the content hash of the source files it was read
from (for a remote source, the identity of each object it names: size and ETag, as the store
lists them), the spec's data-relevant fields (columns, types, levels, target mapping, source), and
`FEATURE_CODE_VERSION`. Any of them changing makes the stored partition stale: `lifecycle run`
re-ingests it and says which part changed. Schedules and estimator settings are not part of it:
they change what is trained, not what was read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lifecycle_assets import storage
from lifecycle_assets.data.sources import is_remote_folder, source_format
from lifecycle_assets.spec import ModelSpec

# Bump when the feature code changes what it makes of the same raw rows (v2: categorical
# levels are compared exactly as written, no longer lower-cased; booleans read as True/False).
FEATURE_CODE_VERSION = 2

# Spec fields that decide which rows are read and what features they become.
DATA_FIELDS = (
    "source",
    "target",
    "positive_label",
    "negative_label",
    "timestamp",
    "timestamp_format",
    "id_column",
    "sensitive_attribute",
    "features",
    "derived_features",
    "task",
)


def _sha256_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def spec_data_hash(spec: ModelSpec) -> str:
    """SHA-256 of the spec's data-relevant fields."""
    return _sha256_json(spec.model_dump(mode="json", include=set(DATA_FIELDS)))


def source_files(spec: ModelSpec) -> list[Path]:
    """The local files a file-based source reads (a file, a folder's files, or a glob)."""
    uri = spec.source.uri
    if spec.source.is_simulator or "://" in uri:
        return []
    path = Path(uri)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".csv", ".parquet"))
    return sorted(Path(path.anchor or ".").glob(str(path.relative_to(path.anchor or "."))))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(spec: ModelSpec) -> dict[str, str]:
    """Each local source file and its SHA-256 (what `sha256sum` prints); {} for the simulator
    or a remote URL."""
    return {str(p): _file_sha256(p) for p in source_files(spec)}


def _remote_infos(spec: ModelSpec) -> list[storage.ObjectInfo]:
    """The objects a remote source reads, as `sources` reads them: a prefix's files of the
    source's format, a glob's matches, or the one object named."""
    uri = spec.source.uri
    if is_remote_folder(uri):
        return storage.list_objects(uri, f".{source_format(spec)}")
    if "*" in uri:
        root = storage.path(uri)
        protocol = uri.split("://", 1)[0]
        found = (storage.object_info(f"{protocol}://{name}") for name in root.fs.glob(root.path))
        return sorted((info for info in found if info), key=lambda info: info.path)
    info = storage.object_info(uri)
    if info is None:
        raise FileNotFoundError(f"source {uri!r}: no such object")
    return [info]


def _identity(info: storage.ObjectInfo) -> str:
    """What changes when the object is rewritten with other bytes: size and ETag (or mtime)
    from the listing, without reading it; SHA-256 of its bytes when the store gives neither."""
    if info.etag or info.mtime:
        return info.fingerprint
    return f"sha256:{hashlib.sha256(storage.read_bytes(info.path)).hexdigest()}"


def remote_objects(spec: ModelSpec) -> dict[str, str]:
    """Each object of a remote source (s3://, any fsspec URL) and its identity; {} for the
    simulator or local files. An object replaced under the same key has a new identity."""
    if spec.source.is_simulator or not storage.is_remote(spec.source.uri):
        return {}
    return {info.path: _identity(info) for info in _remote_infos(spec)}


def source_hash(spec: ModelSpec) -> str:
    """SHA-256 over the source files' names and contents; for a remote source over its spec and
    its objects' identities; for the simulator (deterministic) over the source spec itself."""
    files = file_hashes(spec)
    if files:
        return _sha256_json(files)
    source = spec.source.model_dump(mode="json")
    if remote := remote_objects(spec):
        return _sha256_json({"source": source, "objects": remote})
    return _sha256_json(source)


@dataclass(frozen=True)
class Fingerprint:
    """The three inputs of a stored partition, and one digest over them."""

    source: str
    spec: str
    code: int

    @property
    def digest(self) -> str:
        return _sha256_json(asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "digest": self.digest}

    def changes_from(self, stored: dict[str, Any] | None) -> list[str]:
        """Which inputs differ from a stored fingerprint, in words; [] when none."""
        if not stored:
            return ["no fingerprint stored"]
        labels = {"source": "source file changed", "spec": "spec changed", "code": "feature code"}
        return [text for key, text in labels.items() if stored.get(key) != getattr(self, key)]


def fingerprint(spec: ModelSpec) -> Fingerprint:
    """The fingerprint every partition read now would carry."""
    return Fingerprint(source_hash(spec), spec_data_hash(spec), FEATURE_CODE_VERSION)


# Spec fields that change neither the data nor the fitted model.
_NOT_MODEL_FIELDS = {"description", "schedules", "drift", "gates", "start_date", "end_date"}


def model_spec_hash(spec: ModelSpec) -> str:
    """SHA-256 of everything in the spec that shapes the fitted model (data fields, estimator,
    training settings): equal training digests under equal hashes mean nothing changed."""
    return _sha256_json(spec.model_dump(mode="json", exclude=_NOT_MODEL_FIELDS))
