"""`simulate-traffic` polls the service's spool until every answer is logged: each poll reads
only the bytes appended since the previous one, with the same rows as a full read."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from pathlib import Path

import polars as pl

from lifecycle_assets.data.prediction_log import SEGMENT_SUFFIX, day_dir, logged_rows, segment_files
from lifecycle_assets.data.spool_tail import SpoolTail
from lifecycle_assets.data.traffic import RECEIVED_AT, SPOOL_SUFFIXES, logged_times
from lifecycle_assets.serving.prediction_log import OPEN_SUFFIX

MODEL = "credit_default"
NOW = dt.datetime(2026, 3, 9, 12, tzinfo=dt.UTC)


def _line(number: int) -> bytes:
    stamp = (NOW + dt.timedelta(milliseconds=number)).isoformat()
    return json.dumps({"prediction_id": f"p{number}", "predicted_at": stamp}).encode() + b"\n"


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(data)


def _ids(rows) -> list[str]:
    return [row["prediction_id"] for row in rows]


def test_each_look_reads_only_the_new_bytes(tmp_path: Path) -> None:
    folder = day_dir(tmp_path, MODEL, NOW.date())
    part = folder / f"host-1-000001{OPEN_SUFFIX}"
    tail = SpoolTail()
    assert _ids(tail.new_rows([])) == []

    _append(part, _line(0) + _line(1) + _line(2)[:10])  # the last line half written
    assert _ids(tail.new_rows([part])) == ["p0", "p1"]
    _append(part, _line(2)[10:] + _line(3))
    assert _ids(tail.new_rows([part])) == ["p2", "p3"]
    assert _ids(tail.new_rows([part])) == [], "nothing appended, nothing read"

    closed = part.rename(part.with_suffix(SEGMENT_SUFFIX))  # the writer rotates
    other = folder / f"host-2{SEGMENT_SUFFIX}"
    _append(other, _line(4) + b"not json\n" + _line(5))
    assert _ids(tail.new_rows([closed, other])) == ["p4", "p5"]
    assert tail.bad_lines == 1
    read = closed.stat().st_size + other.stat().st_size
    assert tail.bytes_read == read, "a byte read twice"

    other.write_bytes(_line(6))  # rewritten shorter: read again from its start
    assert _ids(tail.new_rows([closed, other, folder / "gone.jsonl"])) == ["p6"]
    assert tail.bytes_read == read + other.stat().st_size


def _serve_log(folder: Path, count: int) -> None:
    """What a service does while the client waits: rows land over several polls, a line in two
    writes, the segment rotated and a new one started."""
    first, second = folder / f"host-1-000001{OPEN_SUFFIX}", folder / f"host-1-000002{OPEN_SUFFIX}"
    lines = [_line(n) for n in range(count)]
    half = count // 2
    _append(first, b"".join(lines[: half - 1]) + lines[half - 1][:7])
    time.sleep(0.5)
    _append(first, lines[half - 1][7:])
    os.rename(first, first.with_suffix(SEGMENT_SUFFIX))
    time.sleep(0.5)
    _append(second, b"".join(lines[half:]))


def test_logged_times_finds_every_row_reading_each_byte_once(tmp_path: Path) -> None:
    count = 40
    answers = pl.DataFrame(
        {"prediction_id": [f"p{n}" for n in range(count)], RECEIVED_AT: [NOW] * count}
    )
    folder = day_dir(tmp_path, MODEL, NOW.date())
    writer = threading.Thread(target=_serve_log, args=(folder, count))
    writer.start()
    tail = SpoolTail()
    try:
        found = logged_times([tmp_path], MODEL, answers, wait_seconds=30, tail=tail)
    finally:
        writer.join()

    assert found["predicted_at"].null_count() == 0
    segments = sorted(folder.iterdir())
    expected = {row["prediction_id"]: row["predicted_at"] for _, row in logged_rows(segments)}
    got = dict(zip(found["prediction_id"], found["predicted_at"], strict=True))
    assert {key: dt.datetime.fromisoformat(value) for key, value in expected.items()} == got
    assert tail.bytes_read == sum(path.stat().st_size for path in segments)


def test_the_spool_is_listed_by_the_log_readers_own_listing(tmp_path: Path) -> None:
    """A spool's segments, closed and still written (`.open`), of the days asked only: the one
    listing of a model's segments (`segment_files`), told which suffixes a spool holds."""
    day = NOW.date()
    for offset, name in [(-2, "old.jsonl"), (0, f"b{OPEN_SUFFIX}"), (0, "a.jsonl"), (1, "c.txt")]:
        _append(day_dir(tmp_path, MODEL, day + dt.timedelta(days=offset)) / name, _line(offset))
    (day_dir(tmp_path, MODEL, day) / f"folder{SEGMENT_SUFFIX}").mkdir()
    listed = segment_files(tmp_path, MODEL, day - dt.timedelta(days=1), day + dt.timedelta(days=1),
                           suffixes=SPOOL_SUFFIXES)  # fmt: skip
    assert [path.name for path in listed] == ["a.jsonl", f"b{OPEN_SUFFIX}"]
    assert [path.name for path in segment_files(tmp_path, MODEL)] == ["old.jsonl", "a.jsonl"]
