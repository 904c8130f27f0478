"""The lake's self-check is cheap without being blind: a file is hashed again only when its
listing metadata moved since its bytes last matched, and any write moves it."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.lake_check import RAW, check_objects


def stored(tmp_path: Path) -> tuple[Lake, dict[str, tuple[str, str]]]:
    lake = Lake(tmp_path / "lake", tmp_path / "quarantine", "model")
    expected = {}
    for n in (1, 2, 3):
        sha, path = lake.put(pl.DataFrame({"x": [n] * 100}), RAW)
        expected[f"2026-01-0{n}"] = (str(path), sha)
    return lake, expected


def test_only_files_whose_metadata_moved_are_hashed_again(tmp_path: Path) -> None:
    lake, expected = stored(tmp_path)
    assert check_objects(lake, RAW, expected) == ([], 3)  # first check: every file
    assert check_objects(lake, RAW, expected) == ([], 0)  # nothing moved: nothing hashed
    assert check_objects(lake, RAW, expected, full=True) == ([], 3)  # `--refresh`


def test_a_same_size_overwrite_is_found_and_named(tmp_path: Path) -> None:
    lake, expected = stored(tmp_path)
    check_objects(lake, RAW, expected)
    path = Path(expected["2026-01-02"][0])
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit, same size
    damaged, hashed = check_objects(lake, RAW, expected)
    assert hashed == 1 and [d.day for d in damaged] == ["2026-01-02"]
    assert damaged[0].problem == "altered" and damaged[0].expected == expected["2026-01-02"][1]
    Path(expected["2026-01-03"][0]).unlink()
    damaged, _ = check_objects(lake, RAW, expected)
    assert [(d.day, d.problem) for d in damaged] == [
        ("2026-01-02", "altered"),
        ("2026-01-03", "missing"),
    ]
