"""Find new files in a spec's landing folder and the days each one carries.

The new-data sensor uses this to turn "a file arrived" into "these daily partitions changed".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lifecycle_assets.data.lake import sha256_bytes
from lifecycle_assets.data.sources import scan, source_format, timestamp_utc
from lifecycle_assets.spec import ModelSpec


@dataclass(frozen=True)
class LandedFile:
    """A data file in the landing folder, identified by its content."""

    path: Path
    sha256: str

    @property
    def fingerprint(self) -> str:
        return self.sha256[:16]


def landing_folder(spec: ModelSpec) -> Path | None:
    """The local folder a file-based spec reads from; None for the simulator or a single file."""
    if spec.source.is_simulator or "://" in spec.source.uri:
        return None
    folder = Path(spec.source.uri)
    return folder if folder.is_dir() else None


def landed_files(spec: ModelSpec, folder: Path) -> list[LandedFile]:
    fmt = source_format(spec)
    return [
        LandedFile(path, sha256_bytes(path.read_bytes()))
        for path in sorted(folder.glob(f"*.{fmt}"))
    ]


def days_in_file(spec: ModelSpec, path: Path) -> list[str]:
    """The distinct UTC days of the file's event timestamps, as partition keys."""
    if spec.is_snapshot:
        return [spec.start_date.isoformat()]
    rows = scan(path, source_format(spec))
    dtype = rows.collect_schema()[spec.timestamp]
    days = rows.select(timestamp_utc(spec.timestamp, dtype).dt.date().unique()).collect()
    return sorted(day.isoformat() for day in days.to_series().drop_nulls())
