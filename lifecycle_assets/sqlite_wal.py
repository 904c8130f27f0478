"""One idle connection held on each of Dagster's SQLite databases, and its log checkpointed by a
thread, so that Dagster's connection per event (per write, for the run and schedule databases)
stops costing three disk flushes.

Dagster's SQLite event log opens a connection for every event it writes and closes it after. On
a WAL database the last connection to close checkpoints the log into the database file and
deletes it, and the next commit starts a new log: a flush for the commit and two for the
checkpoint, per event, for about 300 events of a `lifecycle run` (3-15 ms each event here, as
busy as the disk is). While one more connection stays open on the file, a close is not the last
one: a commit only appends to the log (with `synchronous=NORMAL`, `dagster_storage._engine`),
and the log is flushed into the database by the checkpoints below.

The thread is there for whoever watches a run: Dagster's `watch` (the UI's live run log) wakes
on a change to the run's database file, which a commit to the log no longer makes. So a
database a connection used is checkpointed (PASSIVE: it never waits for, or blocks, a reader or
a writer) `CHECKPOINT_DELAY` seconds after that use, which moves the events into the file and
wakes the watchers, as each close did before, a fraction of a second later. Releasing a database
(its engine is dropped, the storage disposed, the process exits) checkpoints it and closes the
held connection, which, the last one, removes the log.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
import weakref

from lifecycle_assets.sqlite_schema import BUSY_SECONDS

# How long after a use a database is checkpointed: how late a watcher may see an event.
CHECKPOINT_DELAY = 0.2
log = logging.getLogger(__name__)
_HOLDERS: weakref.WeakSet[WalHolder] = weakref.WeakSet()
# A forked child's copies of its parent's connections: kept, never closed (closing one in the
# child could checkpoint or delete a log the parent is writing).
_INHERITED: list[sqlite3.Connection] = []


class WalHolder:
    """The held connections of one storage, and the thread that checkpoints what they hold."""

    def __init__(self, delay: float = CHECKPOINT_DELAY) -> None:
        self._delay = delay
        self._lock = threading.Condition()
        self._held: dict[str, sqlite3.Connection] = {}
        self._used: dict[str, float] = {}  # path -> monotonic time of its first unflushed use
        self._thread: threading.Thread | None = None
        self._closed = False
        _HOLDERS.add(self)

    def hold(self, path: str) -> None:
        """Keep a connection open on the database at `path` (once per path)."""
        with self._lock:
            if self._closed or path in self._held:
                return
            db = sqlite3.connect(
                path, timeout=BUSY_SECONDS, check_same_thread=False, isolation_level=None
            )
            # A first read maps the log's index: the connection now counts as open on the log.
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            self._held[path] = db

    def used(self, path: str) -> None:
        """A connection to `path` was used: checkpoint it `delay` seconds from its first use."""
        with self._lock:
            if self._closed or path not in self._held:
                return
            self._used.setdefault(path, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._checkpoint_loop, name="lifecycle-wal-checkpoint", daemon=True
                )
                self._thread.start()
            self._lock.notify()

    def release(self, path: str) -> None:
        """Checkpoint `path` and close its held connection (the last one removes the log)."""
        with self._lock:
            self._used.pop(path, None)
            db = self._held.pop(path, None)
            if db is not None:
                _checkpoint(db)
                db.close()

    def close(self) -> None:
        """Release every database and stop the thread (the storage's `dispose`, or exit)."""
        with self._lock:
            for path in list(self._held):
                self.release(path)
            self._closed = True
            self._lock.notify()

    def _checkpoint_loop(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._used:
                    self._lock.wait()
                    continue
                now = time.monotonic()
                due = [path for path, first in self._used.items() if now - first >= self._delay]
                if not due:
                    self._lock.wait(self._delay - (now - min(self._used.values())))
                    continue
                for path in due:
                    del self._used[path]
                    if (db := self._held.get(path)) is not None:
                        _checkpoint(db)

    def _forget(self) -> None:
        """In a forked child: the parent's connections, lock and thread are not this process's
        (an SQLite connection must not be used across a fork), so they are set aside unclosed."""
        _INHERITED.extend(self._held.values())
        self._lock = threading.Condition()
        self._held, self._used, self._thread = {}, {}, None


def _checkpoint(db: sqlite3.Connection) -> None:
    """Move the log into the database file without waiting for anyone; a database that is busy
    or gone is left to the next checkpoint, or to the last close."""
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as error:  # nothing is lost: the events are in the log, read as such
        log.debug("checkpoint left for later: %s", error)


def _close_all() -> None:
    for holder in list(_HOLDERS):
        holder.close()


def _forget_all() -> None:
    for holder in list(_HOLDERS):
        holder._forget()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_forget_all)
