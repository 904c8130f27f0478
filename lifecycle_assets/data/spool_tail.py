"""Read only what the service appended to its spool segments since the last look.

`simulate-traffic` polls the spool every 0.2 s until the service has logged every answer it
received; reading every segment from its start each time cost the whole day's log per poll.
A `SpoolTail` keeps, per segment, how many bytes it has consumed, and reads on from there:

- a rotating writer's `<part>.open` renamed `<part>.jsonl` once closed is the same segment (same
  name without its suffix), read on from the same offset;
- a new segment is read from its start; one that shrank (rewritten) is read again from its start;
- a last line still being written (no newline yet) is left for the next look, never parsed half.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lifecycle_assets.data.prediction_log import BadRow, parse_row


class SpoolTail:
    """The rows appended to a set of local spool segments since the previous `new_rows`."""

    def __init__(self) -> None:
        # Per segment (its path without suffix): bytes read, and the unfinished last line.
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}
        self.bytes_read = 0  # over every look: each byte of a segment is read once
        self.bad_lines = 0  # complete lines that are not valid rows, skipped as logged_rows does

    def new_rows(self, paths: list[Path]) -> Iterator[dict[str, Any]]:
        """Each valid row appended to `paths` since the last call (bad lines skipped)."""
        for path in paths:
            key = path.with_suffix("")
            try:
                handle = path.open("rb")
            except FileNotFoundError:  # renamed or shipped since it was listed: next look
                continue
            with handle:
                size = handle.seek(0, 2)
                offset = self._offsets.get(key, 0)
                if size < offset:  # rewritten shorter: not the bytes read before
                    offset, self._partial[key] = 0, b""
                if size == offset:
                    continue
                handle.seek(offset)
                data = handle.read(size - offset)
            self.bytes_read += len(data)
            self._offsets[key] = offset + len(data)
            *lines, self._partial[key] = (self._partial.get(key, b"") + data).split(b"\n")
            for line in lines:
                try:
                    yield parse_row(line)
                except BadRow:
                    self.bad_lines += 1
