"""A remote source's fingerprint follows the objects it names, not only the spec: an S3 object
replaced under the same key is new data (re-read), the same bytes uploaded again are not.

S3 is moto's standalone server, reached through an endpoint URL as MinIO would be."""

from __future__ import annotations

import datetime as dt
import uuid

import polars as pl
import pytest

from lifecycle_assets import storage
from lifecycle_assets.data.fingerprint import fingerprint, remote_objects
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.team_servers import S3Server, moto_s3  # noqa: F401  (fixture)
from lifecycle_assets_tests.test_data_gates_units import members_frame, write_csv, write_spec


def _csv_bytes(frame: pl.DataFrame, tmp_path) -> bytes:
    return write_csv(frame, tmp_path / f"{uuid.uuid4().hex}.csv").read_bytes()


def _remote(spec: ModelSpec, uri: str) -> ModelSpec:
    return spec.model_copy(update={"source": spec.source.model_copy(update={"uri": uri})})


@pytest.fixture
def prefix(moto_s3: S3Server) -> str:  # noqa: F811
    return moto_s3.url(f"source-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def local_spec(tmp_path) -> ModelSpec:
    return write_spec(tmp_path, write_csv(members_frame(days=2), tmp_path / "members.csv"))


@pytest.mark.parametrize("shape", ["file", "folder", "glob"])
def test_a_replaced_object_is_a_changed_source(
    shape: str, prefix: str, local_spec: ModelSpec, tmp_path
) -> None:
    frame = members_frame(days=2)
    storage.write_atomic(f"{prefix}/a.csv", _csv_bytes(frame, tmp_path))
    storage.write_atomic(f"{prefix}/b.csv", _csv_bytes(frame.tail(10), tmp_path))
    uri = {"file": f"{prefix}/a.csv", "folder": prefix, "glob": f"{prefix}/*.csv"}[shape]
    spec = _remote(local_spec, uri)
    before = fingerprint(spec)

    storage.write_atomic(f"{prefix}/a.csv", _csv_bytes(frame, tmp_path))  # the same bytes again
    storage.write_atomic(f"{prefix}/notes.txt", b"not data")  # not a file the source reads
    assert fingerprint(spec) == before, "same bytes under the same key: nothing to re-read"

    storage.write_atomic(f"{prefix}/a.csv", _csv_bytes(frame.head(300), tmp_path))
    assert fingerprint(spec).changes_from(before.to_dict()) == ["source file changed"]
    assert set(remote_objects(spec)) == (
        {f"{prefix}/a.csv"} if shape == "file" else {f"{prefix}/a.csv", f"{prefix}/b.csv"}
    )


def test_a_new_object_in_a_remote_folder_is_a_changed_source(
    prefix: str, local_spec: ModelSpec, tmp_path
) -> None:
    storage.write_atomic(f"{prefix}/a.csv", _csv_bytes(members_frame(days=2), tmp_path))
    spec = _remote(local_spec, prefix)
    before = fingerprint(spec)
    storage.write_atomic(f"{prefix}/c.csv", _csv_bytes(members_frame(days=1, seed=9), tmp_path))
    assert fingerprint(spec).changes_from(before.to_dict()) == ["source file changed"]


def test_a_missing_remote_object_is_one_line_naming_it(prefix: str, local_spec: ModelSpec) -> None:
    spec = _remote(local_spec, f"{prefix}/gone.csv")
    with pytest.raises(FileNotFoundError, match=f"{prefix}/gone.csv"):
        fingerprint(spec)


def test_a_day_read_from_s3_is_stale_after_its_object_is_replaced(
    prefix: str, local_spec: ModelSpec, tmp_path
) -> None:
    """What `lifecycle run` asks of each stored day: `fresh` before, `stale` (source changed)
    once the object under the same key holds other rows, and the re-read stores the new rows."""
    from lifecycle_assets.data.ingest import day_state, ingest_day
    from lifecycle_assets.data.lake import Lake

    frame = members_frame(days=2)
    storage.write_atomic(f"{prefix}/a.csv", _csv_bytes(frame, tmp_path))
    spec = _remote(local_spec, f"{prefix}/a.csv")
    lake = Lake(tmp_path / "lake", tmp_path / "quarantine", spec.name)
    day = str(frame["event_time"].min().date())
    first = ingest_day(spec, lake, day)
    assert first.rows == 250 and day_state(lake, day, fingerprint(spec))[0] != "stale"

    storage.write_atomic(f"{prefix}/a.csv", _csv_bytes(frame.head(100), tmp_path))
    assert day_state(lake, day, fingerprint(spec)) == ("stale", ["source file changed"])
    assert ingest_day(spec, lake, day).rows == 100


def test_a_new_object_in_s3_stales_only_its_own_days(
    prefix: str, local_spec: ModelSpec, tmp_path
) -> None:
    """Per-day fingerprints on object storage: an object landing with rows of another day
    leaves the stored day fresh; the day's own object replaced makes it stale."""
    from lifecycle_assets.data.ingest import day_state, featurize_day, ingest_day
    from lifecycle_assets.data.lake import Lake

    first = members_frame(days=1)
    later = members_frame(days=1, seed=9, start=dt.date(2026, 3, 9))
    storage.write_atomic(f"{prefix}/a.csv", _csv_bytes(first, tmp_path))
    spec = _remote(local_spec, prefix)
    lake = Lake(tmp_path / "lake", tmp_path / "quarantine", spec.name)
    day = str(first["event_time"].min().date())
    ingest_day(spec, lake, day)
    featurize_day(spec, lake, day)
    assert day_state(lake, day, fingerprint(spec)) == ("fresh", [])

    storage.write_atomic(f"{prefix}/b.csv", _csv_bytes(later, tmp_path))
    assert day_state(lake, day, fingerprint(spec)) == ("fresh", []), "another day's object"

    storage.write_atomic(f"{prefix}/a.csv", _csv_bytes(first.head(100), tmp_path))
    assert day_state(lake, day, fingerprint(spec)) == ("stale", ["source file changed"])
