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
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lifecycle_assets.data import valid_json
from lifecycle_assets.data.prediction_log import SEGMENT_SUFFIX, day_dir
from lifecycle_assets.serving.metrics import PredictionMetrics
from lifecycle_assets.serving.model_set import ModelSet

logger = logging.getLogger(__name__)

# Keys of an answer row that the log names differently (`probability` is logged as `score`).
_RENAMED = {"probability"}
# Keys every answer row has, all logged under the line's own keys: rows with no other key
# (flags, a shadow's score) skip the look for extras.
_ANSWER_KEYS = frozenset(
    (
        "prediction",
        "probability",
        "prediction_id",
        "record_id",
        "model_name",
        "model_version",
        "variant",
    )
)
# A rotating writer's segment while it is written; renamed to SEGMENT_SUFFIX once closed.
OPEN_SUFFIX = ".open"


# Random bits for prediction ids, read from the OS 4 KiB at a time: one `getrandom` call per
# id cost more than the rest of the id. An iterator's `next` is atomic under the GIL, so threads
# never share a value; a forked child drops its parent's pool (it would repeat its ids).
_POOL_BYTES = 4096
_pool: Iterator[tuple[int]] = iter(())


def _drop_pool() -> None:
    global _pool
    _pool = iter(())


os.register_at_fork(after_in_child=_drop_pool)


def _random_bits() -> int:
    """64 random bits from the OS's generator (as `secrets` draws them), refilled as needed."""
    global _pool
    drawn = next(_pool, None)
    if drawn is None:
        _pool = struct.iter_unpack("<Q", os.urandom(_POOL_BYTES))
        drawn = next(_pool)
    return drawn[0]


def new_prediction_id() -> str:
    """A UUIDv7 (RFC 9562) as its canonical string: time-ordered, so ids sort by creation.

    48 bits of Unix milliseconds, the version, 12 bits of sub-millisecond time, the variant and
    62 random bits (Python 3.11 has no `uuid.uuid7`). Formatted as `str(uuid.UUID(...))` does.
    """
    nanos = time.time_ns()
    millis, sub = divmod(nanos, 1_000_000)
    fraction = sub * 4096 // 1_000_000  # sub-millisecond part in 12 bits
    value = (millis & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76 | fraction << 64
    value |= 0b10 << 62 | _random_bits() >> 2
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
            return self._fd
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


class _Layout:
    """What every line logged for one model set shares: digests, score key, feature names."""

    def __init__(self, models: ModelSet) -> None:
        self.models = models
        self.digests = {
            m.ref.version: m.ref.training_digest
            for m in (models.champion, models.canary, models.shadow)
            if m is not None
        }
        spec = models.champion.loaded.spec
        self.score_key = "probability" if spec.is_classifier else "prediction"
        self.feature_names = tuple(f.name for f in spec.features)


# The strict encoder of `valid_json.dumps`, built once (`json.dumps` with options builds one on
# every call); a value it refuses (NaN, a numpy value) sends the line through `valid_json.dumps`.
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
_last_layout: _Layout | None = None


def _layout(models: ModelSet) -> _Layout:
    global _last_layout
    layout = _last_layout
    if layout is None or layout.models is not models:
        layout = _last_layout = _Layout(models)
    return layout


def log_lines(
    rows: list[dict[str, Any]],
    records: list[dict[str, Any]],
    models: ModelSet,
    latencies: list[float] | None,
    now: dt.datetime,
) -> list[bytes]:
    """One strict-JSON line per row: bookkeeping, outputs, then the request's inputs."""
    layout = _layout(models)
    digests, score_key, feature_names = layout.digests, layout.score_key, layout.feature_names
    predicted_at = now.isoformat(timespec="microseconds")
    lines = []
    for index, (row, record) in enumerate(zip(rows, records, strict=True)):
        entry: dict[str, Any] = {
            "prediction_id": row["prediction_id"],
            "predicted_at": predicted_at,
            "model_name": row["model_name"],
            "model_version": row["model_version"],
            "variant": row["variant"],
            "record_id": row["record_id"],
            # Set on shadow rows only: the prediction id of the answer the shadow row mirrors.
            "shadow_of": row.get("shadow_of"),
            "training_digest": digests.get(row["model_version"], ""),
            "latency_ms": None if latencies is None else latencies[index],
            "prediction": row["prediction"],
            "score": row.get("score", row.get(score_key)),
        }
        # Anything else the answer carries (e.g. flags) is logged as answered.
        if row.keys() - _ANSWER_KEYS:
            for key, value in row.items():
                if key not in entry and key not in _RENAMED:
                    entry[key] = value
        entry.update(zip(feature_names, map(record.get, feature_names), strict=True))
        try:
            text = _encode(entry)
        except (TypeError, ValueError):
            text = valid_json.dumps(entry)
        lines.append((text + "\n").encode())
    return lines
