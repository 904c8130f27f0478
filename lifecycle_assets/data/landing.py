"""Find new files in a spec's landing folder and the days each one carries.

The new-data sensor uses this to turn "a file arrived" into "these daily partitions changed".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lifecycle_assets.data.sources import source_format, timestamp_utc
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
        LandedFile(path, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.glob(f"*.{fmt}"))
    ]


def days_in_file(spec: ModelSpec, path: Path) -> list[str]:
    """The distinct UTC days of the file's event timestamps, as partition keys."""
    scan = (
        pl.scan_parquet(path)
        if source_format(spec) == "parquet"
        else pl.scan_csv(path, infer_schema=False)
    )
    dtype = scan.collect_schema()[spec.timestamp]
    days = scan.select(timestamp_utc(spec.timestamp, dtype).dt.date().unique()).collect()
    return sorted(day.isoformat() for day in days.to_series().drop_nulls())
