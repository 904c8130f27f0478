"""The content-addressed lake: raw batches, feature partitions and training-set snapshots.

Every stored frame is written as canonical Parquet and named by its SHA-256, so a hash in a
manifest, an MLflow tag or a prediction log pins exactly one set of bytes, and a file whose
bytes changed is detectable. Small JSON manifests map a day to the hash that holds it.
Rejected batches go to a quarantine folder with their failure report: bad data is never dropped.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
from upath import UPath

from lifecycle_assets import storage
from lifecycle_assets.data import valid_json
from lifecycle_assets.storage import sha256_bytes, write_atomic

__all__ = ["write_atomic"]  # kept here for its callers; the one implementation is in storage

FEATURES = "features"
PREDICTION_LOGS = "prediction_logs"


def canonical_parquet(frame: pl.DataFrame) -> bytes:
    """Parquet bytes that depend only on the frame's content (no writer timestamps)."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True, use_pyarrow=False)
    return buffer.getvalue()


class IntegrityError(RuntimeError):
    """A stored object's bytes no longer match the hash that names it."""


@dataclass(frozen=True)
class BatchRecord:
    """What the lake knows about one day's raw batch."""

    day: str
    sha256: str
    path: str
    source: str
    rows: int
    status: str  # "accepted" or "quarantined"
    schema: dict[str, str]
    ingested_at: str
    report: dict[str, Any] | None = None
    # What produced it (`data.fingerprint.Fingerprint.to_dict()`); None before fingerprints.
    fingerprint: dict[str, Any] | None = None
    # The Dagster run that read and validated it: that run's schema check reuses `report`
    # instead of validating the same bytes a second time. None outside a run.
    run_id: str | None = None


class Lake:
    """One model's folders in the lake and the quarantine, local or in object storage."""

    def __init__(
        self, lake_dir: storage.Location, quarantine_dir: storage.Location, model_name: str
    ) -> None:
        self.root = storage.path(lake_dir) / model_name
        self.quarantine_root = storage.path(quarantine_dir) / model_name

    # -- content-addressed objects -------------------------------------------------------
    def put(self, frame: pl.DataFrame, kind: str) -> tuple[str, UPath]:
        data = canonical_parquet(frame)
        sha = sha256_bytes(data)
        path = self.root / kind / "objects" / f"{sha}.parquet"
        if not storage.exists(path):
            write_atomic(path, data)
        return sha, path

    @staticmethod
    def read_verified(path: storage.Location, sha256: str) -> pl.DataFrame:
        data = storage.read_bytes(path)
        actual = sha256_bytes(data)
        if actual != sha256:
            raise IntegrityError(f"{path} has SHA-256 {actual}, expected {sha256}")
        return pl.read_parquet(io.BytesIO(data))

    # -- raw batches ---------------------------------------------------------------------
    def _raw_manifest(self, day: str) -> UPath:
        return self.root / "raw" / "manifests" / f"{day}.json"

    def store_batch(
        self,
        day: str,
        frame: pl.DataFrame,
        source: str,
        report: dict[str, Any],
        fingerprint: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> BatchRecord:
        """Store an accepted batch in the lake, or a rejected one in quarantine with its report.

        A rejected batch also takes the day's features out of the lake: the day's newest data
        is bad, so the day is excluded from training rather than served by an older batch.
        """
        if frame.is_empty():
            raise ValueError(f"{day}: an empty batch is skipped, never stored")
        accepted = bool(report["passed"])
        if accepted:
            sha, path = self.put(frame, "raw")
        else:
            data = canonical_parquet(frame)
            sha = sha256_bytes(data)
            path = self.quarantine_root / day / f"{sha}.parquet"
            write_atomic(path, data)
            report_text = valid_json.dumps(report, indent=2)  # a NaN failure case is null
            write_atomic(path.with_suffix(".report.json"), report_text.encode())
        record = BatchRecord(
            day=day,
            sha256=sha,
            path=str(path),
            source=source,
            rows=frame.height,
            status="accepted" if accepted else "quarantined",
            schema={name: str(dtype) for name, dtype in frame.schema.items()},
            ingested_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            report=report,
            fingerprint=fingerprint,
            run_id=run_id,
        )
        write_atomic(self._raw_manifest(day), json.dumps(asdict(record), indent=2).encode())
        self._empty_marker(day).unlink(missing_ok=True)
        if not accepted:
            self._manifest(FEATURES, day).unlink(missing_ok=True)
        return record

    def forget_day(self, day: str) -> bool:
        """Drop the day's raw and feature manifests (the source no longer has rows for it);
        the content-addressed objects stay. True if there was something to drop."""
        paths = (self._raw_manifest(day), self._manifest(FEATURES, day), self._empty_marker(day))
        existed = any(p.exists() for p in paths)
        for path in paths:
            path.unlink(missing_ok=True)
        return existed

    def mark_empty(self, day: str, fingerprint: dict[str, Any]) -> None:
        """Note that the source had no rows for `day` under this fingerprint (no data is
        stored), so that the next run need not read the day again until its inputs change."""
        self.forget_day(day)
        write_atomic(self._empty_marker(day), json.dumps({"fingerprint": fingerprint}).encode())

    def empty_fingerprint(self, day: str) -> dict[str, Any] | None:
        path = self._empty_marker(day)
        return json.loads(path.read_text())["fingerprint"] if path.exists() else None

    def _empty_marker(self, day: str) -> Path:
        return self.root / "raw" / "empty" / f"{day}.json"

    # -- rows of no day (event timestamp empty or unreadable) ----------------------------
    def _undated_manifest(self) -> UPath:
        return self.root / "raw" / "undated.json"

    def store_undated(self, frame: pl.DataFrame, report: dict[str, Any]) -> dict[str, Any] | None:
        """Keep the source's rows that belong to no day in quarantine, by content, with their
        report, and point the model at them; with no such rows, clear the pointer (the source
        was fixed). The same rows read again land on the same file: nothing is duplicated."""
        manifest = self._undated_manifest()
        if frame.is_empty():
            manifest.unlink(missing_ok=True)
            return None
        data = canonical_parquet(frame)
        sha = sha256_bytes(data)
        path = self.quarantine_root / "undated" / f"{sha}.parquet"
        if not storage.exists(path):
            write_atomic(path, data)
        record = {**report, "sha256": sha, "path": str(path), "rows": frame.height}
        write_atomic(path.with_suffix(".report.json"), valid_json.dumps(record, indent=2).encode())
        write_atomic(manifest, json.dumps(record, indent=2).encode())
        return record

    def undated(self) -> dict[str, Any] | None:
        """The quarantined rows of no day the last read of the source found, or None."""
        path = self._undated_manifest()
        return storage.read_json(path) if storage.exists(path) else None

    def batch_days(self) -> list[str]:
        """Days with a stored raw batch, accepted or quarantined."""
        folder = self.root / "raw" / "manifests"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []

    def batch(self, day: str) -> BatchRecord | None:
        path = self._raw_manifest(day)
        if not storage.exists(path):
            return None
        return BatchRecord(**storage.read_json(path))

    def read_batch(self, record: BatchRecord) -> pl.DataFrame:
        return self.read_verified(record.path, record.sha256)

    # -- daily derived tables (features, prediction logs) ---------------------------------
    def _manifest(self, kind: str, day: str) -> UPath:
        return self.root / kind / "manifests" / f"{day}.json"

    def store_daily(self, kind: str, day: str, frame: pl.DataFrame, **extra: Any) -> dict:
        """Store one day of a derived table by content, and point the day at it."""
        sha, path = self.put(frame, kind)
        entry = {"day": day, "sha256": sha, "path": str(path), "rows": frame.height, **extra}
        write_atomic(self._manifest(kind, day), json.dumps(entry, indent=2).encode())
        return entry

    def daily_entry(self, kind: str, day: str) -> dict[str, Any] | None:
        path = self._manifest(kind, day)
        return storage.read_json(path) if storage.exists(path) else None

    def daily_days(self, kind: str) -> list[str]:
        folder = self.root / kind / "manifests"
        return [Path(info.name).stem for info in storage.list_objects(folder, ".json")]

    def store_features(
        self,
        day: str,
        frame: pl.DataFrame,
        raw_sha256: str,
        fingerprint: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self.store_daily(
            FEATURES, day, frame, raw_sha256=raw_sha256, fingerprint=fingerprint
        )

    def feature_entry(self, day: str) -> dict[str, Any] | None:
        return self.daily_entry(FEATURES, day)

    def feature_days(self) -> list[str]:
        return self.daily_days(FEATURES)

    # -- training-set snapshots ----------------------------------------------------------
    def store_training_set(self, frame: pl.DataFrame, manifest: dict[str, Any]) -> dict[str, Any]:
        sha, path = self.put(frame, "training_sets")
        manifest = {**manifest, "digest": sha, "path": str(path)}
        write_atomic(
            self.root / "training_sets" / "manifests" / f"{sha}.json",
            json.dumps(manifest, indent=2, default=str).encode(),
        )
        return manifest

    def training_manifest(self, digest: str) -> dict[str, Any]:
        return storage.read_json(self.root / "training_sets" / "manifests" / f"{digest}.json")
