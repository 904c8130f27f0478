"""Find new files in a spec's landing folder and the days each one carries.

The new-data sensor uses this to turn "a file arrived" into "these daily partitions changed".
A tick lists the folder through the storage door and compares each object's listing metadata
(size and S3 ETag, or size and modification time on a local disk) with what the previous tick
saw: only an object whose metadata changed is downloaded and hashed. The SHA-256 stays the
identity of a batch (it keys the run), so a file rewritten under the same name is a new batch
with runs of its own, and a file merely touched (new metadata, same bytes) triggers nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from lifecycle_assets import storage
from lifecycle_assets.data.lake import sha256_bytes
from lifecycle_assets.data.sources import event_time, is_remote_folder, scan, source_format
from lifecycle_assets.spec import ModelSpec

# The cursor keeps, per file name, the listing metadata and the content hash last seen.
LISTING, SHA256 = "listing", "sha256"
Cursor = dict[str, dict[str, str]]


@dataclass(frozen=True)
class LandedFile:
    """A data file in the landing folder whose content is new: its hash and its days."""

    name: str
    path: str
    sha256: str
    days: list[str]

    @property
    def fingerprint(self) -> str:
        return self.sha256[:16]


@dataclass(frozen=True)
class LandingScan:
    """One tick's look at the folder: what is new, what to remember, and what it cost."""

    listed: int
    fresh: list[LandedFile]
    cursor: Cursor
    # Objects downloaded and hashed this tick: zero when no listing metadata changed.
    hashed: int
    touched: list[str] = field(default_factory=list)  # new metadata, same bytes
    removed: list[str] = field(default_factory=list)  # seen by the previous tick, gone now


def landing_folder(spec: ModelSpec) -> storage.Location | None:
    """The folder a file-based spec reads from (a local path or an object-storage prefix);
    None for the simulator, a single file or a glob."""
    uri = spec.source.uri
    if spec.source.is_simulator:
        return None
    if is_remote_folder(uri):
        return uri.rstrip("/")
    if storage.is_remote(uri):
        return None
    folder = Path(uri)
    return folder if folder.is_dir() else None


def read_cursor(value: dict[str, object]) -> Cursor:
    """The sensor's cursor; an entry of the older form (a bare content fingerprint) has no
    listing metadata, so its file is hashed once more and the entry upgraded."""
    return {
        name: dict(entry) if isinstance(entry, dict) else {SHA256: str(entry)}
        for name, entry in value.items()
    }


def scan_landing(spec: ModelSpec, folder: storage.Location, seen: Cursor) -> LandingScan:
    """List `folder`, hash only the objects whose listing metadata changed since `seen`."""
    fmt = source_format(spec)
    objects = storage.list_objects(folder, f".{fmt}")
    cursor: Cursor = {}
    fresh, touched, hashed = [], [], 0
    for info in objects:
        before = seen.get(info.name, {})
        if before.get(LISTING) == info.fingerprint:
            cursor[info.name] = before
            continue
        data = storage.read_bytes(info.path)
        hashed += 1
        sha = sha256_bytes(data)
        cursor[info.name] = {LISTING: info.fingerprint, SHA256: sha[:16]}
        if before.get(SHA256) == sha[:16]:
            touched.append(info.name)
            continue
        fresh.append(LandedFile(info.name, info.path, sha, days_in_bytes(spec, data, fmt)))
    removed = sorted(set(seen) - set(cursor))
    return LandingScan(len(objects), fresh, cursor, hashed, touched, removed)


def days_in_bytes(spec: ModelSpec, data: bytes, fmt: str) -> list[str]:
    """The distinct UTC days of the file's event timestamps, as partition keys, from the very
    bytes that were hashed (no second download, no path the reader must reach again)."""
    if spec.is_snapshot:
        return [spec.start_date.isoformat()]
    rows = scan(io.BytesIO(data), fmt)
    days = rows.select(event_time(spec, rows.collect_schema()).dt.date().unique()).collect()
    return sorted(day.isoformat() for day in days.to_series().drop_nulls())
