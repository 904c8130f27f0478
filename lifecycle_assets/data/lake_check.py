"""Is each stored object still the one its manifest names? Checked before a run uses it.

The lake names every object by the SHA-256 of its bytes, so a deleted file or a changed byte
is detectable: this module detects it. Checking is cheap because it re-hashes only what may
have changed: as the landing sensor does (`data.landing`), it keeps the listing metadata
(size and ETag on object storage, size and modification time on a local disk) each object had
when its bytes last matched, and hashes again only an object whose metadata moved since. A
`full` check (`lifecycle run --refresh`) hashes every object.

A damaged object is never deleted: an altered one is moved to
`<quarantine>/<model>/damaged/<day>/` with a report, and the report is kept for a missing one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any

from upath import UPath

from lifecycle_assets import storage
from lifecycle_assets.data.lake import Lake, sha256_bytes
from lifecycle_assets.storage import write_atomic

RAW, FEATURES = "raw", "features"
# What `Damage.resolution` says once it is settled (the text follows in `Damage.outcome`).
RESTORED, REREAD, REBUILT, REFUSED = "restored", "re-read", "rebuilt", "refused"
_CACHE = "verified.json"


@dataclass
class Damage:
    """One stored object that is not what its manifest names: missing, or other bytes."""

    model: str
    kind: str  # RAW or FEATURES
    day: str
    path: str
    expected: str
    actual: str | None  # None: no file at the path
    quarantined: str | None = None  # where an altered file was moved
    resolution: str = ""  # RESTORED, REREAD, REBUILT or REFUSED
    outcome: str = ""  # the resolution in words

    @property
    def problem(self) -> str:
        return "missing" if self.actual is None else "altered"

    def line(self) -> str:
        """One line naming the model, the day, the file and both hashes, then what was done."""
        found = "no file" if self.actual is None else f"SHA-256 {self.actual[:12]}"
        what = "raw batch" if self.kind == RAW else "features file"
        text = (
            f"{self.model} {what} {self.day} {self.problem}: {self.path} "
            f"(manifest SHA-256 {self.expected[:12]}, found {found})"
        )
        if self.quarantined:
            text += f"; moved to {self.quarantined}"
        return f"{text}: {self.outcome}" if self.outcome else text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problem": self.problem}


def _cache_path(lake: Lake, kind: str) -> storage.Location:
    return lake.root / kind / _CACHE


def _read_cache(lake: Lake, kind: str) -> dict[str, str]:
    path = _cache_path(lake, kind)
    if not storage.exists(path):
        return {}
    try:
        value = storage.read_json(path)
    except storage.CorruptFileError:
        return {}  # only a cache: everything is hashed again and the file rewritten
    return value if isinstance(value, dict) else {}


def check_objects(
    lake: Lake, kind: str, expected: dict[str, tuple[str, str]], *, full: bool = False
) -> tuple[list[Damage], int]:
    """Check each day's object (day -> (path, SHA-256)); the damaged ones, and how many files
    were hashed (0 when no listing metadata moved since the last check)."""
    cache = _read_cache(lake, kind)
    seen = dict(cache)
    damaged, hashed = [], 0
    for day, (path, sha) in sorted(expected.items()):
        info = storage.object_info(path)
        if info is None:
            damaged.append(Damage(lake.root.name, kind, day, str(path), sha, None))
            continue
        if not full and cache.get(sha) == info.fingerprint:
            continue
        actual = sha256_bytes(storage.read_bytes(path))
        hashed += 1
        if actual == sha:
            seen[sha] = info.fingerprint
        else:
            seen.pop(sha, None)
            damaged.append(Damage(lake.root.name, kind, day, str(path), sha, actual))
    if seen != cache:
        write_atomic(_cache_path(lake, kind), json.dumps(seen, indent=0).encode())
    return damaged, hashed


def set_aside(lake: Lake, damage: Damage) -> None:
    """Move an altered file to the quarantine, leaving the manifest's path free for the right
    bytes. Never deletes a byte: the file is written there before it leaves the lake."""
    if damage.actual is None:
        return
    target = _damaged_folder(lake, damage.day) / f"{damage.kind}-{damage.actual}.parquet"
    write_atomic(target, storage.read_bytes(damage.path))
    storage.path(damage.path).unlink()
    damage.quarantined = str(target)


def keep_report(lake: Lake, damage: Damage, run_id: str | None = None) -> None:
    """The damage and what was done about it, in the quarantine beside any moved file."""
    record = {
        **damage.to_dict(),
        "run_id": run_id,
        "found_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    report = _damaged_folder(lake, damage.day) / f"{damage.kind}-{damage.expected}.report.json"
    write_atomic(report, json.dumps(record, indent=2).encode())


def _damaged_folder(lake: Lake, day: str) -> UPath:
    return lake.quarantine_root / "damaged" / day


def restore(path: storage.Location, sha256: str, data: bytes) -> bool:
    """Write `data` back at `path` only if it is the very object the manifest names."""
    if sha256_bytes(data) != sha256:
        return False
    write_atomic(path, data)
    return True
