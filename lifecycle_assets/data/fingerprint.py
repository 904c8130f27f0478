"""What produced a stored partition, so that a run knows by itself when to read it again.

A partition's fingerprint joins three things: the content hash of the source files its day's rows
come from (for a remote source, the identity of each such object: size and ETag, as the store
lists them), the spec's data-relevant fields (columns, types, levels, target mapping, source), and
`FEATURE_CODE_VERSION`. Any of them changing makes the stored partition stale: `lifecycle run`
re-ingests it and says which part changed. Schedules and estimator settings are not part of it:
they change what is trained, not what was read.

A file source's hash is per day (`data.day_sources`): a file landing in a folder makes stale
only the days its rows fall on, a file replaced or deleted only the days it fed (before or
after). Days stored before per-day fingerprints carry the hash of the whole source: such a day
is fresh while the whole source is unchanged, and is read once more, saying so, once it changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle_assets import storage
from lifecycle_assets.data.day_sources import SourceDays, SourceFile, local_files, remote_files
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


def file_hashes(spec: ModelSpec) -> dict[str, str]:
    """Each local source file and its SHA-256 (what `sha256sum` prints); {} for the simulator
    or a remote URL."""
    return {file.name: file.sha256 for file in local_files(spec, source_files(spec))}


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


def remote_objects(spec: ModelSpec) -> dict[str, str]:
    """Each object of a remote source (s3://, any fsspec URL) and its identity: size and ETag
    (or mtime) from the listing, SHA-256 of its bytes where the store gives neither; {} for the
    simulator or local files. An object replaced under the same key has a new identity."""
    if spec.source.is_simulator or not storage.is_remote(spec.source.uri):
        return {}
    return {file.name: file.identity for file in remote_files(spec, _remote_infos(spec))}


def _source_files(spec: ModelSpec) -> tuple[SourceFile, ...] | None:
    """The files the source reads, each with its identity and days; None for the simulator."""
    if spec.source.is_simulator:
        return None
    if storage.is_remote(spec.source.uri):
        return remote_files(spec, _remote_infos(spec))
    return local_files(spec, source_files(spec))


def _whole_hash(spec: ModelSpec, files: tuple[SourceFile, ...] | None) -> str:
    """SHA-256 over the source files' names and contents; for a remote source over its spec and
    its objects' identities; for the simulator (deterministic) over the source spec itself."""
    source = spec.source.model_dump(mode="json")
    if not files:
        return _sha256_json(source)
    if storage.is_remote(spec.source.uri):
        return _sha256_json({"source": source, "objects": {f.name: f.identity for f in files}})
    return _sha256_json({f.name: f.sha256 for f in files})


# `Fingerprint.scope` of a day's fingerprint: its `source` hashes only the files of that day.
DAY_SCOPE = "day"
LEGACY_SOURCE = "source changed since the day was stored with the whole source's hash"


@dataclass(frozen=True)
class Fingerprint:
    """The three inputs of a stored partition, and one digest over them.

    `fingerprint(spec)` is the source's: `source` hashes the whole source, and `files` knows
    which files feed which day; `for_day(day)` is what a stored day carries and is compared
    with. The simulator has no files: its fingerprint is every day's.
    """

    source: str
    spec: str
    code: int
    scope: str = ""  # DAY_SCOPE, or "" for the whole source
    files: SourceDays | None = field(default=None, compare=False, repr=False)
    # A day's fingerprint keeps the whole source's hash: it reads days stored before per-day
    # fingerprints, which carry that hash.
    whole: str = field(default="", compare=False, repr=False)

    def _stored(self) -> dict[str, Any]:
        stored: dict[str, Any] = {"source": self.source, "spec": self.spec, "code": self.code}
        return {**stored, "scope": self.scope} if self.scope else stored

    @property
    def digest(self) -> str:
        return _sha256_json(self._stored())

    def to_dict(self) -> dict[str, Any]:
        return {**self._stored(), "digest": self.digest}

    def for_day(self, day: str) -> Fingerprint:
        """What a partition of `day` read now carries: the hash of the files feeding it."""
        if self.files is None:
            return self
        return Fingerprint(
            self.files.day_hash(day), self.spec, self.code, DAY_SCOPE, whole=self.source
        )

    def changes_from(self, stored: dict[str, Any] | None) -> list[str]:
        """Which inputs differ from a stored fingerprint, in words; [] when none."""
        if not stored:
            return ["no fingerprint stored"]
        changes = []
        scope = stored.get("scope", "")
        if scope == self.scope:
            if stored.get("source") != self.source:
                changes.append("source file changed")
        elif not (self.scope == DAY_SCOPE and stored.get("source") == self.whole):
            changes.append(LEGACY_SOURCE if self.scope == DAY_SCOPE else "source file changed")
        labels = {"spec": "spec changed", "code": "feature code"}
        return changes + [
            text for key, text in labels.items() if stored.get(key) != getattr(self, key)
        ]


def fingerprint(spec: ModelSpec) -> Fingerprint:
    """The fingerprint of the source as it is now (`for_day` gives each day's)."""
    files = _source_files(spec)
    return Fingerprint(
        _whole_hash(spec, files),
        spec_data_hash(spec),
        FEATURE_CODE_VERSION,
        files=None if files is None else SourceDays(files),
    )


# Spec fields that change neither the data nor the fitted model.
_NOT_MODEL_FIELDS = {"description", "schedules", "drift", "gates", "start_date", "end_date"}


def model_spec_hash(spec: ModelSpec) -> str:
    """SHA-256 of everything in the spec that shapes the fitted model (data fields, estimator,
    training settings): equal training digests under equal hashes mean nothing changed."""
    return _sha256_json(spec.model_dump(mode="json", exclude=_NOT_MODEL_FIELDS))
