"""Bounds on the part of a request uvicorn reads before the app sees it: the head and its time.

BentoML runs its workers with uvicorn's httptools protocol, which keeps no limit on the request
line or the headers (a 200 MB header grew a worker from 157 to 545 MB) and no deadline for
receiving a request (one byte every few seconds holds a connection open for ever). BentoML
exposes no uvicorn option, and uvicorn's only header bound, `h11_max_incomplete_event_size`,
belongs to the h11 protocol, measured slower than httptools on the c1 path. So the worker runs
httptools through `HeadLimitedProtocol`, which adds:

- a head of more than `MAX_HEAD_BYTES` (request line plus headers) is answered 431 and the
  connection closed, counted as it arrives: what it holds is bounded by the limit plus one read
  (at most 256 KiB);
- a request whose head and body have not fully arrived `READ_SECONDS` after its first byte is
  answered 408 (when nothing was answered yet) and the connection closed;
- a new connection that sends nothing within uvicorn's keep-alive timeout is closed, as an idle
  one is after a response (uvicorn arms that timer only after a response);
- a connection over the open-connection limits (`connection_limits.py`) is answered 503 and
  closed as it is made.

What it costs per request: a request that arrives whole in one read (every single-record
predict) runs four overridden methods and a few comparisons; the head's exact size is summed
only when the reads holding it exceed the limit (a large body in the same read), and the timer
is armed only for a request still incomplete after a read (a head or body spanning reads).

While a head is incomplete its bytes are counted per read, so a head that begins mid-read is
counted with the bytes before it in that read: with pipelined requests (which no common client
sends) a head spanning reads can be refused a little before its own size reaches the limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lifecycle_assets.serving.connection_limits import ConnectionBook

logger = logging.getLogger(__name__)

# nginx's default allows 4 x 8 KB header lines, h11's 16 KB per head; 64 KiB leaves room for
# long tokens and cookies while holding memory per connection to a small bound.
MAX_HEAD_BYTES = 64 * 1024
# As BentoML's own request timeout (`traffic.timeout` of the service): time to send a request.
READ_SECONDS = 30.0

_HEAD_TOO_LARGE = b'{"error":"the request line and headers exceed %d bytes","detail":[]}'
_READ_TIMEOUT = b'{"error":"the request did not arrive within %d seconds","detail":[]}'
_TOO_MANY = b'{"error":"too many open connections %s; retry later","detail":[]}'
_TOO_MANY_WHY = {"per_client": b"from this address", "total": b"to this worker"}
_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class _HeadTooLarge(Exception):
    """Raised in the parser's callback to stop parsing a head over the limit."""


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded head and a deadline for each request."""

    max_head_bytes = MAX_HEAD_BYTES
    read_seconds = READ_SECONDS
    # One per worker process (each runs one server): every connection of the worker counts.
    connections = ConnectionBook()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes of earlier reads since the current request's head began; -1 outside a head.
        self._head_bytes = -1
        self._read_size = 0  # bytes of the read being parsed
        self._reading = False  # between a request's first byte and its last
        self._head_too_large = False
        self._deadline: asyncio.TimerHandle | None = None
        self._address: str | None = None  # counted in the book while open

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else "unknown"
        refused = type(self).connections.admit(address)
        if refused is not None:
            self._refuse(503, _TOO_MANY % _TOO_MANY_WHY[refused], retry_after=1, quiet=True)
            return
        self._address = address
        # Idle until its first byte, as between two requests: closed after the keep-alive time.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._reading = True

    def on_headers_complete(self) -> None:
        earlier, self._head_bytes = self._head_bytes, -1
        # The head is within the reads so far: exact sizes only when they could be over.
        if earlier + self._read_size > self.max_head_bytes and self._head_size() > (
            self.max_head_bytes
        ):
            self._head_too_large = True
            raise _HeadTooLarge  # the parser stops; uvicorn calls `send_400_response`
        super().on_headers_complete()

    def _head_size(self) -> int:
        """The request line and headers as sent (give or take the spaces around values)."""
        return len(self.url) + 14 + sum(len(n) + len(v) + 4 for n, v in self.headers)

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse(431, _HEAD_TOO_LARGE % self.max_head_bytes)
        else:
            super().send_400_response(msg)

    def on_message_complete(self) -> None:
        self._reading = False
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        self._read_size = len(data)
        super().data_received(data)
        if not self._reading or self.parser is None:
            return
        if self._head_bytes >= 0:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, _HEAD_TOO_LARGE % self.max_head_bytes)
                return
        if self._deadline is None and self.transport.get_protocol() is self:  # not upgraded
            self._deadline = self.loop.call_later(self.read_seconds, self._too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._address is not None:
            type(self).connections.release(self._address)
            self._address = None
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._deadline = None
        if self._reading and not self.transport.is_closing():
            cycle = self.cycle
            answered = cycle is not None and cycle.response_started and self._head_bytes < 0
            self._refuse(408, None if answered else _READ_TIMEOUT % self.read_seconds)

    def _refuse(
        self, status: int, body: bytes | None, *, retry_after: int = 0, quiet: bool = False
    ) -> None:
        """Answer `status` (unless the app already answered) and close the connection;
        `quiet` when the caller logs (refusals that can come in floods)."""
        self._reading = False
        if not quiet:
            logger.warning("closing a connection from %s: HTTP %d", self.client, status)
        if body is not None:
            retry = b"retry-after: %d\r\n" % retry_after if retry_after else b""
            head = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n%sconnection: close\r\n\r\n"
                % (status, _REASONS[status], len(body), retry)
            )
            self.transport.write(head + body)
        self.transport.close()


def install() -> bool:
    """Make uvicorn's `auto` HTTP protocol (the one BentoML's workers use) this one; False
    when httptools is not installed (uvicorn then runs h11, which bounds heads itself)."""
    import uvicorn.config

    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    name = f"{__name__}:{HeadLimitedProtocol.__name__}"
    uvicorn.config.HTTP_PROTOCOLS["auto"] = name
    return True
