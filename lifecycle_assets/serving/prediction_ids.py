"""Prediction ids: UUIDv7 (RFC 9562), time-ordered, unique across processes and threads."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator

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
