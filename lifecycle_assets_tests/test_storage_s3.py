"""Storage through fsspec: the same lake and the same hash checks on a local disk and on S3.

S3 is moto's standalone server, reached only through an endpoint URL, as MinIO would be.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid

import boto3
import polars as pl
import pytest

from lifecycle_assets import storage
from lifecycle_assets.data.lake import IntegrityError, Lake
from lifecycle_assets.data.simulator import simulate_range
from lifecycle_assets.provenance.links import BROKEN, OK, file_link
from lifecycle_assets.settings import LifecycleSettings
from lifecycle_assets_tests.team_servers import S3Server, moto_s3  # noqa: F401  (fixture)


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path, moto_s3: S3Server) -> str:  # noqa: F811
    if request.param == "local":
        return str(tmp_path / "store")
    return moto_s3.url(f"store-{uuid.uuid4().hex[:8]}")


def test_objects_are_written_whole_and_listed_by_metadata(root: str) -> None:
    folder = f"{root}/manifests"
    assert storage.list_objects(folder) == [], "a missing folder lists as empty"
    storage.write_atomic(f"{folder}/b.json", b'{"v": 1}')
    storage.write_json(f"{folder}/a.json", {"v": 2})
    storage.write_atomic(f"{folder}/notes.txt", b"x")
    listed = storage.list_objects(folder, ".json")
    assert [info.name for info in listed] == ["a.json", "b.json"]
    assert listed[1].size == len(b'{"v": 1}')
    assert storage.read_json(listed[0].path) == {"v": 2}
    before = listed[1].fingerprint
    storage.write_atomic(f"{folder}/b.json", b'{"v": 100}')
    after = storage.list_objects(folder, ".json")[1].fingerprint
    assert after != before, "a rewritten object lists with a new fingerprint, without hashing"
    assert not any(info.name.startswith(".") for info in storage.list_objects(folder))


def test_parquet_round_trips_through_bytes(root: str) -> None:
    frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    storage.write_atomic(f"{root}/frame.parquet", buffer.getvalue())
    assert storage.exists(f"{root}/frame.parquet") and not storage.exists(f"{root}/other")
    assert storage.read_parquet(f"{root}/frame.parquet").equals(frame)


def test_the_lake_on_s3_stores_quarantines_and_detects_changed_bytes(
    moto_s3: S3Server,  # noqa: F811
    monkeypatch,
    tmp_path,
) -> None:
    prefix = f"team-{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIFECYCLE_STORAGE_URL", moto_s3.url(prefix))
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    settings = LifecycleSettings.from_env()
    assert str(settings.lake_dir).startswith("s3://")
    lake = Lake(settings.lake_dir, settings.quarantine_dir, "credit_default")
    (day, frame), (bad_day, bad) = simulate_range(dt.date(2026, 1, 1), 2, seed=3)
    day, bad_day = str(day), str(bad_day)
    record = lake.store_batch(day, frame, "simulator", {"passed": True})
    rejected = lake.store_batch(bad_day, bad, "simulator", {"passed": False, "why": "test"})
    assert record.path.startswith(f"s3://{moto_s3.bucket}/{prefix}/lake/credit_default/raw/")
    assert rejected.path.startswith(f"s3://{moto_s3.bucket}/{prefix}/quarantine/")
    assert storage.read_json(rejected.path.replace(".parquet", ".report.json"))["why"] == "test"
    assert lake.batch(day) == record and lake.batch("2020-01-01") is None
    assert lake.read_batch(record).equals(frame)
    entry = lake.store_daily("features", day, frame.head(10))
    assert lake.daily_days("features") == [day]
    assert lake.daily_entry("features", day) == entry
    assert not list(tmp_path.rglob("*.parquet")), "nothing of the lake lands on the local disk"

    assert file_link("raw_batch", day, record.path, record.sha256, {}, None).status == OK
    key = record.path.removeprefix(f"s3://{moto_s3.bucket}/")
    boto3.client("s3", endpoint_url=moto_s3.endpoint_url).put_object(
        Bucket=moto_s3.bucket, Key=key, Body=b"changed behind the lake's back"
    )
    link = file_link("raw_batch", day, record.path, record.sha256, {}, None)
    assert link.status == BROKEN and "hash mismatch" in link.reason
    with pytest.raises(IntegrityError):
        lake.read_batch(record)


def test_files_are_copied_in_and_out_whole(root: str, tmp_path) -> None:
    local = tmp_path / "archive.bento"
    local.write_bytes(bytes(range(256)) * 4096)  # 1 MiB, more than one chunk of most readers
    storage.put_file(local, f"{root}/bentos/archive.bento")
    listed = storage.list_objects(f"{root}/bentos")
    assert [(info.name, info.size) for info in listed] == [("archive.bento", 1 << 20)]
    back = tmp_path / "back.bento"
    storage.get_file(f"{root}/bentos/archive.bento", back)
    assert back.read_bytes() == local.read_bytes()
