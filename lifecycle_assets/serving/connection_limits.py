"""How many connections one worker holds open, in all and per client address.

uvicorn (as BentoML runs it) accepts every connection and keeps it for as long as the client
likes: a connection that never sends a byte is never timed out (uvicorn's keep-alive timer
starts only after a response), and nothing bounds how many are open. A few thousand idle
sockets from one client used up the worker's file descriptors; after that the worker could not
accept a connection, open a log segment or read a model. `HeadLimitedProtocol` closes a
connection that sends nothing within the keep-alive timeout, and asks this book, as each
connection is made, whether it may stay open:

- at most `per_client` open connections from one address (`LIFECYCLE_MAX_CONNECTIONS_PER_CLIENT`,
  default 256: a benchmark at concurrency 64, or a client's pool, is far below it);
- at most `max_connections()` in all, below the process's file descriptor limit with
  `RESERVED_FDS` left for models, log segments and metrics files.

A connection over either is answered 503 with `Retry-After` and closed at once: the client is
told, and what it holds is one socket for one loop turn. Each refusal is counted in
`lifecycle_refused_connections_total{reason}` and logged at most once per `LOG_EVERY_SECONDS`
with the number refused since (a flood of refusals must not become a flood of log lines).
Behind a proxy every client shares the proxy's address: raise the per-client bound there.
"""

from __future__ import annotations

import logging
import resource
import time
from collections import Counter
from collections.abc import Callable

from lifecycle_assets.settings import LifecycleSettings

logger = logging.getLogger(__name__)

# A book made before the service reads its settings (the protocol's own) starts at the default.
DEFAULT_PER_CLIENT: int = LifecycleSettings.model_fields["max_connections_per_client"].default
# Descriptors kept for everything but client sockets: model files, log segments, metrics files.
RESERVED_FDS = 256
MAX_CONNECTIONS_CAP = 4096
LOG_EVERY_SECONDS = 10.0

PER_CLIENT = "per_client"
TOTAL = "total"


def max_connections() -> int:
    """Open connections one worker may hold: below its soft descriptor limit, at most 4096."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CAP
    return max(1, min(MAX_CONNECTIONS_CAP, soft - RESERVED_FDS))


class ConnectionBook:
    """Open connections per client address in one worker; refuses those over the limits."""

    def __init__(
        self,
        per_client: int = DEFAULT_PER_CLIENT,
        total: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = per_client
        self.total = max_connections() if total is None else total
        self.clock = clock
        self._open: Counter[str] = Counter()
        self._count = 0
        self._unlogged: Counter[str] = Counter()
        self._logged_at = float("-inf")

    def admit(self, address: str) -> str | None:
        """Count a new connection from `address`; the reason it is refused, None when admitted.

        A refused connection is not counted as open: do not `release` it.
        """
        if self._open[address] >= self.per_client:
            return self._refuse(PER_CLIENT, address)
        if self._count >= self.total:
            return self._refuse(TOTAL, address)
        self._open[address] += 1
        self._count += 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection closed."""
        left = self._open[address] - 1
        if left > 0:
            self._open[address] = left
        else:
            del self._open[address]
        self._count -= 1

    def open_from(self, address: str) -> int:
        return self._open[address]

    def _refuse(self, reason: str, address: str) -> str:
        from lifecycle_assets.serving.metrics import prediction_metrics

        prediction_metrics().refused_connections.labels(reason).inc()
        self._unlogged[reason] += 1
        now = self.clock()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            counts = ", ".join(f"{n} {why}" for why, n in sorted(self._unlogged.items()))
            self._unlogged.clear()
            logger.warning(
                "refusing connections (503) over the limits of %d per client and %d in all: "
                "%s since the last report; last from %s, which holds %d",
                self.per_client,
                self.total,
                counts,
                address,
                self._open[address],
            )
        return reason
