"""Ship a replica's prediction log to the shared storage, every row once, no object rewritten.

Object storage cannot append, and several replicas on several hosts answer for one model, so in
team mode each replica writes its log on its own disk (`<home>/prediction_logs`, the spool) with
a rotating writer (`prediction_log.py`) and this shipper, in a daemon thread, every
LIFECYCLE_LOG_SHIP_SECONDS:

1. closes the current segment if it is that old (the next batch opens the next one);
2. closes the `.open` segments no process holds locked: a crashed replica's (reconcile);
3. uploads each closed segment `<model>/<day>/<host>-<pid>-<start>-<seq>.jsonl` under the same
   name to the shared log folder, then deletes it locally.

Exactly once: segment names are unique (host, pid, start time, sequence) and a closed segment
never changes, so an upload interrupted before the local delete finds its object already there
with the same size and only deletes (the object is never written twice). A shipper takes a
segment under an exclusive `flock`, so two processes sharing a spool never ship one twice. A
failed upload loses nothing: the segment stays, the attempt is counted in
`lifecycle_prediction_log_write_errors_total{error="upload: <type>"}`, `/metadata` says how many
segments wait, and the next tick retries. When the service shuts down (its `on_shutdown` hook;
`atexit` elsewhere) the current segment is closed and shipped; a kill -9 leaves an `.open` file
that the next start (or any shipper on that spool) ships.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lifecycle_assets import storage
from lifecycle_assets.data.prediction_log import SEGMENT_SUFFIX, model_dir
from lifecycle_assets.serving.metrics import PredictionMetrics
from lifecycle_assets.serving.prediction_log import OPEN_SUFFIX, PredictionLogWriter, close_part
from lifecycle_assets.settings import LifecycleSettings

logger = logging.getLogger(__name__)


class ShipConflict(RuntimeError):
    """An object of the segment's name exists with other bytes: never overwritten."""


@contextlib.contextmanager
def _claimed(path: Path) -> Iterator[int | None]:
    """The file's descriptor under an exclusive lock, or None when another process holds it
    (its writer, or another shipper) or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class SegmentShipper:
    """Ships one model's closed spool segments to `target_dir` (see the module doc)."""

    def __init__(
        self,
        writer: PredictionLogWriter,
        target_dir: Any,
        metrics: PredictionMetrics,
        every_seconds: float,
    ) -> None:
        self.writer = writer
        self.model = writer.model
        self.spool = model_dir(writer.log_dir, writer.model)
        self.target = storage.path(target_dir) / writer.model
        self.metrics = metrics
        self.every_seconds = every_seconds
        self.rows_shipped = 0
        self.segments_shipped = 0
        self.failed_uploads = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # One pass at a time: the thread's and the one at exit.
        self._pass = threading.Lock()

    # -- one pass ----------------------------------------------------------------------------
    def ship_once(self, older_than: float | None = None) -> int:
        """Close what is due, reconcile dead writers' segments, upload the closed ones;
        returns the number of segments still waiting (0: everything logged is shipped)."""
        with self._pass:
            self.writer.rotate(self.every_seconds if older_than is None else older_than)
            for path in self._spooled(OPEN_SUFFIX):
                self._reconcile(path)
            waiting = 0
            for path in self._spooled(SEGMENT_SUFFIX):
                waiting += not self._ship(path)
            return waiting

    def _spooled(self, suffix: str) -> list[Path]:
        if not self.spool.is_dir():
            return []
        return sorted(self.spool.glob(f"*/*{suffix}"))

    def _reconcile(self, path: Path) -> None:
        """An `.open` segment nobody holds locked was left by a process that died: close it."""
        with _claimed(path) as fd:
            if fd is not None:
                logger.warning("closing %s, left open by a process that stopped", path.name)
                close_part(path)

    def _ship(self, path: Path) -> bool:
        """Upload one closed segment and delete it; False when it must wait (locked or failed)."""
        with _claimed(path) as fd:
            if fd is None:
                return not path.exists()  # shipped by another process in the meantime
            data = _read_all(fd)
            try:
                if data:
                    self._upload(path, data)
            except Exception as error:  # kept locally and retried on the next pass
                self._failed(path, error)
                return False
            path.unlink(missing_ok=True)
            if data:
                self.rows_shipped += data.count(b"\n")
                self.segments_shipped += 1
            return True

    def _upload(self, path: Path, data: bytes) -> None:
        target = self.target / path.parent.name / path.name
        found = storage.object_info(target)
        if found is None:
            storage.write_atomic(target, data)
        elif found.size != len(data):
            raise ShipConflict(f"{target} exists with {found.size} bytes, not {len(data)}")
        # Same name, same size: shipped before a crash kept the local copy; nothing to write.
        if self.last_error is not None:
            logger.warning("prediction log of %s ships again", self.model)
            self.last_error = None

    def _failed(self, path: Path, error: Exception) -> None:
        name = f"upload: {type(error).__name__}"
        self.failed_uploads += 1
        self.metrics.log_write_errors.labels(self.model, name).inc()
        if self.last_error != name:
            logger.error("cannot ship %s (%s: %s); retrying", path.name, name, error)
        self.last_error = name

    # -- running -----------------------------------------------------------------------------
    def start(self) -> SegmentShipper:
        """Ship what a previous process left, then every `every_seconds` in a daemon thread;
        at exit, close and ship the current segment."""
        self._thread = threading.Thread(
            target=self._run, name=f"log-shipper-{self.model}", daemon=True
        )
        self._thread.start()
        atexit.register(self.stop)
        return self

    def _run(self) -> None:
        while True:
            try:
                self.ship_once()
            except Exception:  # a listing of the spool failed: say so, try again next tick
                logger.exception("shipping the prediction log of %s", self.model)
            if self._stop.wait(self.every_seconds):
                return

    def stop(self) -> int:
        """Stop the thread, then close and ship everything; returns the segments left."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        return self.ship_once(older_than=0.0)

    def status(self) -> dict[str, Any]:
        """For `/metadata`: what was shipped, what waits locally, the last upload error."""
        return {
            "to": "shared storage",
            "rows_shipped": self.rows_shipped,
            "segments_shipped": self.segments_shipped,
            "segments_waiting": len(self._spooled(SEGMENT_SUFFIX)),
            "failed_uploads": self.failed_uploads,
            "last_error": self.last_error,
        }


def open_prediction_log(
    settings: LifecycleSettings, model: str, metrics: PredictionMetrics
) -> PredictionLogWriter:
    """The model's log writer in this process: appending to `prediction_log_dir` (embedded),
    or rotating in the local spool with a shipper to the shared storage (object storage)."""
    if not settings.ships_prediction_logs:
        return PredictionLogWriter(settings.prediction_log_dir, model, metrics)
    writer = PredictionLogWriter(settings.prediction_log_spool_dir, model, metrics, rotating=True)
    every = settings.log_ship_seconds
    writer.shipper = SegmentShipper(writer, settings.prediction_log_dir, metrics, every).start()
    return writer
