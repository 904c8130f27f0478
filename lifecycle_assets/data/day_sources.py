"""Which source files feed which day, so that a stored day goes stale only when its own files do.

A day's rows may be in any file of a landing folder (a late file, a file covering a week), so the
days a file feeds are read from its event timestamps. Reading them costs a download and a scan,
so each file's content hash and days are remembered in this process under its listing (local:
size, mtime, ctime and inode, so a rewrite is seen even if its mtime is set back; remote: size
and ETag): the sensor's code server reads a landed file once, not once per tick, and a run reads
each file once for its whole window. A file whose days cannot be read (no timestamp column, not
a readable table) feeds every day, as the whole source did before per-day fingerprints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from lifecycle_assets import storage
from lifecycle_assets.data.landing import days_in_bytes
from lifecycle_assets.data.sources import source_format
from lifecycle_assets.spec import ModelSpec

# The days of a file whose event times cannot be read: every day.
EVERY_DAY = "*"

# file -> (its listing and the timestamp settings, (SHA-256 of its bytes, the days it feeds)):
# one entry per file, replaced when the file is, so a long-lived code server does not grow.
_SEEN: dict[str, tuple[tuple[object, ...], tuple[str, tuple[str, ...]]]] = {}


@dataclass(frozen=True)
class SourceFile:
    """One file of the source: what identifies its content, and the days its rows fall on."""

    name: str
    identity: str
    sha256: str
    days: tuple[str, ...]


@dataclass(frozen=True)
class SourceDays:
    """The source's files grouped by the day they feed."""

    files: tuple[SourceFile, ...]
    _by_day: dict[str, dict[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_day: dict[str, dict[str, str]] = {}
        for file in self.files:
            for day in file.days:
                by_day.setdefault(day, {})[file.name] = file.identity
        object.__setattr__(self, "_by_day", by_day)

    def inputs(self, day: str) -> dict[str, str]:
        """The files whose rows may fall on `day` and their identities ({} for a day no file
        feeds: a later file with rows of that day changes it)."""
        return {**self._by_day.get(EVERY_DAY, {}), **self._by_day.get(day, {})}

    def day_hash(self, day: str) -> str:
        text = "\n".join(f"{name}\t{ident}" for name, ident in sorted(self.inputs(day).items()))
        return hashlib.sha256(text.encode()).hexdigest()


def _read_days(spec: ModelSpec, data: bytes, fmt: str) -> tuple[str, ...]:
    try:
        return tuple(days_in_bytes(spec, data, fmt)) if data else ()
    except (ValueError, OSError, pl.exceptions.PolarsError):
        return (EVERY_DAY,)  # not readable here: the day's own read says why


def _known(
    spec: ModelSpec,
    fmt: str,
    name: str,
    listing: tuple[object, ...] | None,
    load: Callable[[], bytes],
) -> tuple[str, tuple[str, ...]]:
    """The file's SHA-256 and days, remembered under its listing (None: not remembered)."""
    key = (
        (*listing, spec.timestamp, spec.timestamp_format, spec.is_snapshot, fmt)
        if listing
        else None
    )
    seen = _SEEN.get(name)
    if key is not None and seen is not None and seen[0] == key:
        return seen[1]
    data = load()
    value = (hashlib.sha256(data).hexdigest(), _read_days(spec, data, fmt))
    if key is not None:
        _SEEN[name] = (key, value)
    return value


def local_files(spec: ModelSpec, paths: list[Path]) -> tuple[SourceFile, ...]:
    """Local source files, identified by the SHA-256 of their bytes (a file touched with the
    same bytes is not new data)."""
    if not paths:
        return ()
    fmt = source_format(spec)
    files = []
    for path in paths:
        st = path.stat()
        listing = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        sha, days = _known(spec, fmt, str(path), listing, path.read_bytes)
        files.append(SourceFile(str(path), sha, sha, days))
    return tuple(files)


def remote_files(spec: ModelSpec, infos: list[storage.ObjectInfo]) -> tuple[SourceFile, ...]:
    """Remote objects, identified as their listing gives them (size and ETag, or mtime) and by
    the SHA-256 of their bytes where the store gives neither."""
    if not infos:
        return ()
    fmt = source_format(spec)
    files = []
    for info in infos:
        listed = bool(info.etag or info.mtime)
        listing = (info.fingerprint,) if listed else None
        sha, days = _known(spec, fmt, info.path, listing, lambda p=info.path: storage.read_bytes(p))
        identity = info.fingerprint if listed else f"sha256:{sha}"
        files.append(SourceFile(info.path, identity, sha, days))
    return tuple(files)
