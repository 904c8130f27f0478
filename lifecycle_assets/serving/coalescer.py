"""Coalescing: requests that arrive together are scored as one batch, a lone one at once.

A request that finds the coalescer idle (nothing waiting, nothing answered yet in this
event-loop turn) is scored in its own task, with no future to wait on: at concurrency 1 a hop to
a batch cost event-loop CPU on every request. The requests after it in the same turn queue for
one flush, a plain callback two turns later, so requests parsed in the same wake-up (and the
next) are scored together: one vectorized model call for all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lifecycle_assets.serving.requests import ValidatedBatch


@dataclass
class Pending:
    """One request's batch and the future its rows are set on."""

    batch: ValidatedBatch
    future: asyncio.Future[list[dict[str, Any]]]
    # When the request was queued: its answer's server-side latency is logged with each row.
    queued_at: float = field(default_factory=time.perf_counter)


# Scores and answers requests (sets each future), given the running loop.
Answer = Callable[[list[Pending], asyncio.AbstractEventLoop], None]


class Coalescer:
    """Gathers requests into batches of at most `max_rows` rows for `answer`."""

    def __init__(self, max_rows: int, answer: Answer) -> None:
        self.max_rows = max_rows
        self.answer = answer
        self._waiting: deque[Pending] = deque()
        # The loop a flush is scheduled on, from a request's queueing until that flush runs.
        self._flushing: asyncio.AbstractEventLoop | None = None
        # The loop whose current turn answered a request inline (cleared by the next turn).
        self._answered_in: asyncio.AbstractEventLoop | None = None

    async def submit(self, batch: ValidatedBatch) -> list[dict[str, Any]]:
        """Score a batch now when the coalescer is idle, else queue it for the next flush."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        pending = Pending(batch, future)
        if self._flushing is not loop and self._answered_in is not loop:
            # Idle: nothing waits and nothing was answered yet in this loop turn (concurrency 1,
            # or the first request after a pause): no hop to a flush. Requests that follow in
            # the same turn are queued, so a burst still makes one batch after its first.
            self._answered_in = loop
            loop.call_soon(self._end_turn)
            self.answer([pending], loop)
        else:
            self._waiting.append(pending)
            if self._flushing is not loop:
                # Two callbacks deep: the flush runs one loop turn after this request, so
                # requests parsed in the same wake-up, and in the next, join its batch. Plain
                # callbacks, not a worker task woken by an event: each task wake-up and yielded
                # turn cost event-loop CPU.
                self._flushing = loop
                loop.call_soon(loop.call_soon, self._flush)
        return await future  # answered inline: already done, no suspension

    def _end_turn(self) -> None:
        self._answered_in = None

    def _take(self) -> list[Pending]:
        """The oldest waiting requests, up to the batch limit in rows (at least one request)."""
        pending = [self._waiting.popleft()]
        rows = len(pending[0].batch.ids)
        while self._waiting and rows + len(self._waiting[0].batch.ids) <= self.max_rows:
            pending.append(self._waiting.popleft())
            rows += len(pending[-1].batch.ids)
        return pending

    def _flush(self) -> None:
        """Score what waits (up to the batch limit; the rest in the next callback)."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            self._flushing = None
            return
        pending = self._take()
        if self._waiting:
            loop.call_soon(self._flush)
        else:
            self._flushing = None
        self.answer(pending, loop)
