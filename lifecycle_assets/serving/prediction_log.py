"""Write answered and shadow predictions to the model's own prediction log.

Not `bentoml.monitor`: its loggers are process-global (the last model set up received every
model's rows) and its handler swallowed write errors (a full disk lost rows while `/metadata`
said "ok"). Here each model has its own writer, and each writing process its own segment,
`<log_dir>/<model>/<YYYY-MM-DD>/<host>-<pid>-<start>.jsonl` (layout in `data/prediction_log.py`,
which reads it), so workers never interleave bytes in one file.

A batch of rows is one `os.write` of complete lines to a file opened `O_APPEND`: no user-space
buffer to flush, nothing lost to a kill -9 once the call returned. A short write (the disk filled
mid-batch) is cut back to the last complete line, so no torn line is left; the rows that did not
make it are counted as lost. Every write error (ENOSPC, EROFS, EIO, ...) is caught, counted in
`/metrics` (`lifecycle_prediction_log_failures_total` = rows lost,
`lifecycle_prediction_log_write_errors_total` by errno name) and shown in `/metadata` health;
one warning when the log starts failing and one when it recovers, never one per row.

Every row carries the model's output (`prediction`, and `score`: the positive-class probability
of a classifier or a regressor's predicted value), the model that produced it (`model_name`,
`model_version`, `training_digest`), the server-side latency of its request (`latency_ms`, null
on shadow rows) and its `variant`: `champion` or `canary` for answers, `shadow` for rows never
returned, whose `shadow_of` is the prediction id of the answer they mirror (null on answered
rows). Readers of the log that want what clients received filter out `variant == "shadow"`.
Values are strict JSON (`data/valid_json.py`): a NaN input is logged as null.

When the logs are collected on object storage (team mode), which cannot append, the writer
`rotates`: it writes `<segment>-<seq>.open` on the local disk, holding an exclusive `flock` on it,
and closes it (renamed `<segment>-<seq>.jsonl`, never written again) when the shipper asks
(`log_shipping.py`), when the day changes or after a failed write. A closed segment is shipped as
one immutable object; an `.open` file whose lock nobody holds was left by a dead process.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from lifecycle_assets.data.prediction_log import SEGMENT_SUFFIX, day_dir
from lifecycle_assets.serving.log_lines import log_lines
from lifecycle_assets.serving.metrics import PredictionMetrics
from lifecycle_assets.serving.model_set import ModelSet
from lifecycle_assets.serving.prediction_ids import new_prediction_id as new_prediction_id

# (`new_prediction_id` lived here and is still imported from here: re-exported.)
logger = logging.getLogger(__name__)

# A rotating writer's segment while it is written; renamed to SEGMENT_SUFFIX once closed.
OPEN_SUFFIX = ".open"


def segment_name() -> str:
    """This process's segment: host, pid and start time, so no two writers share a file."""
    host = socket.gethostname().split(".")[0] or "host"
    start = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{host}-{os.getpid()}-{start}"


def error_name(error: Exception) -> str:
    """ENOSPC, EROFS, EIO...: what an operator searches for (else the exception's type)."""
    return errno.errorcode.get(getattr(error, "errno", None) or 0, type(error).__name__)


class PredictionLogWriter:
    """One model's log writer in this process: never raises, counts what it could not write."""

    def __init__(
        self, log_dir: Path, model: str, metrics: PredictionMetrics, *, rotating: bool = False
    ) -> None:
        self.log_dir = Path(log_dir)
        # Rotating: numbered segments closed on request, for shipping (see the module doc).
        self.rotating = rotating
        self._seq = 0
        self._fd_path: Path | None = None
        self._opened_at = 0.0
        # Set when the segments are shipped to shared storage: its status joins ours.
        self.shipper: Any = None
        self.model = model
        self.metrics = metrics
        self._logged_rows: Any = None
        self.segment = segment_name()
        self.rows_written = 0
        self.rows_lost = 0
        self.last_error: str | None = None
        self.failing = False
        self._fd: int | None = None
        self._fd_day: dt.date | None = None
        # The shadow scores in a thread; one write at a time keeps truncation exact.
        self._lock = threading.Lock()

    def path(self, day: dt.date) -> Path:
        """The file written for `day`: the segment, or a rotating writer's current part."""
        if self.rotating:
            return day_dir(self.log_dir, self.model, day) / f"{self.part_name()}{OPEN_SUFFIX}"
        return day_dir(self.log_dir, self.model, day) / f"{self.segment}{SEGMENT_SUFFIX}"

    def part_name(self) -> str:
        return f"{self.segment}-{self._seq:06d}"

    def rotate(self, older_than: float = 0.0) -> bool:
        """Close the current segment if it was opened `older_than` seconds ago or earlier;
        the next batch opens a new one. True when a segment was closed."""
        with self._lock:
            if self._fd is None or time.monotonic() - self._opened_at < older_than:
                return False
            self._close()
            return True

    def log(
        self,
        rows: list[dict[str, Any]],
        records: list[dict[str, Any]],
        models: ModelSet,
        latencies: list[float] | None = None,
    ) -> None:
        """Log one batch: each row with its request's inputs and the model's provenance.

        `latencies` holds each answered row's server-side latency in ms (None: shadow rows).
        """
        if not rows:
            return
        now = dt.datetime.now(dt.UTC)
        try:
            lines = log_lines(rows, records, models, latencies, now)
        except Exception as error:  # a row that cannot be built is lost, counted, and loud
            logger.exception("building %d prediction log rows of %s", len(rows), self.model)
            with self._lock:
                self._account(len(rows), 0, error)
            return
        with self._lock:
            written, error = self._write(now.date(), lines)
            self._account(len(lines), written, error)

    def close(self) -> None:
        """At shutdown: close the segment; a shipped log ships everything first."""
        if self.shipper is not None:
            self.shipper.stop()
            return
        with self._lock:
            self._close()

    def _open(self, day: dt.date) -> int:
        if self._fd is not None and self._fd_day == day:
            # A segment deleted under the writer (its folder cleaned while the service runs)
            # would swallow every later row: one fstat per batch finds it and opens a new one.
            if os.fstat(self._fd).st_nlink:
                return self._fd
            logger.warning(
                "the prediction log segment of %s was deleted; writing a new one", self.model
            )
        self._close()
        if self.rotating:
            return self._open_part(day)
        path = self.path(day)
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd, self._fd_day = os.open(path, flags, 0o644), day
        return self._fd

    def _open_part(self, day: dt.date) -> int:
        """A new numbered segment, locked before it gets its name: a shipper never sees an
        `.open` file without its writer's lock unless the writer is gone."""
        self._seq += 1
        path = self.path(day)
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = path.with_name(f".{path.name}.new")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(hidden, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, path)
        except OSError:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self._fd, self._fd_day, self._fd_path = fd, day, path
        self._opened_at = time.monotonic()
        return fd

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._fd_day = self._fd, None, None
            part, self._fd_path = self._fd_path, None
            if part is not None:
                close_part(part)  # still locked: no shipper takes it half-renamed
            try:
                os.close(fd)
            except OSError as error:  # every byte was already written by os.write; say so
                logger.warning("closing the prediction log of %s: %s", self.model, error)

    def _write(self, day: dt.date, lines: list[bytes]) -> tuple[int, OSError | None]:
        """Append whole lines; returns how many landed and the error that stopped the rest."""
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        try:
            fd = self._open(day)
        except OSError as error:
            self._close()
            return 0, error
        done = 0
        try:
            while done < len(data):
                n = os.write(fd, memoryview(data)[done:] if done else data)
                if n <= 0:
                    raise OSError(errno.EIO, "write returned no progress")
                done += n
        except OSError as error:
            return self._cut_back(fd, lines, done), error
        return len(lines), None

    def _cut_back(self, fd: int, lines: list[bytes], done: int) -> int:
        """After a failed or short write, truncate to the last complete line; returns the
        number of lines kept."""
        kept, end = 0, 0
        for line in lines:
            if end + len(line) > done:
                break
            end += len(line)
            kept += 1
        if end != done:
            try:
                # The file is this process's own (one writer, under the lock): the batch's
                # `done` bytes are its last ones. Read here, not before every write: a syscall
                # per batch for the rare torn write.
                start = os.fstat(fd).st_size - done
                os.ftruncate(fd, start + end)
            except OSError:
                # The torn tail stays; the reader quarantines it. Reopen on the next batch.
                logger.exception("could not cut a torn prediction log line from %s", self.segment)
        self._close()
        return kept

    def _account(self, total: int, written: int, error: Exception | None) -> None:
        self.rows_written += written
        if self._logged_rows is None:  # the labelled series, looked up once
            self._logged_rows = self.metrics.logged_rows.labels(self.model)
        self._logged_rows.inc(written)
        if error is None:
            if self.failing:
                self.failing = False
                logger.warning(
                    "prediction log of %s is writing again; %d rows were lost (last error %s)",
                    self.model,
                    self.rows_lost,
                    self.last_error,
                )
            return
        lost = total - written
        name = error_name(error)
        self.rows_lost += lost
        self.metrics.log_failures.labels(self.model).inc(lost)
        self.metrics.log_write_errors.labels(self.model, name).inc()
        if not self.failing or name != self.last_error:
            logger.error(
                "prediction log of %s cannot be written (%s: %s); rows are being lost "
                "and counted in lifecycle_prediction_log_failures_total",
                self.model,
                name,
                getattr(error, "strerror", None) or error,
            )
        self.failing, self.last_error = True, name

    def health(self) -> str:
        """`ok`, `failing: ENOSPC, 12 rows lost`, or `recovered: ...` once writing again."""
        if not self.rows_lost and not self.failing:
            return "ok"
        state = "failing" if self.failing else "recovered"
        return f"{state}: {self.last_error}, {self.rows_lost} rows lost"

    def status(self) -> dict[str, Any]:
        """What `/metadata` shows: counts and the errno name, no paths."""
        status = {
            "health": self.health(),
            "rows_written": self.rows_written,
            "rows_lost": self.rows_lost,
            "last_error": self.last_error,
        }
        if self.shipper is not None:
            status["shipping"] = self.shipper.status()
        return status


def close_part(path: Path) -> Path:
    """Mark a rotating writer's segment closed (`.open` -> `.jsonl`); returns the new path.

    A failed rename leaves the `.open` file; once its lock is released the shipper's
    reconcile closes it, as it does a dead process's.
    """
    closed = path.with_suffix(SEGMENT_SUFFIX)
    try:
        os.rename(path, closed)
    except OSError as error:
        logger.warning("could not close the prediction log segment %s: %s", path.name, error)
        return path
    return closed
