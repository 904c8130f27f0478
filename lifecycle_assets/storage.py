"""One door to stored files, on a local disk or in object storage, through UPath and fsspec.

The lake, quarantine, reports and archive call these functions with a location that is either a
local path or a URL (`s3://bucket/prefix/...`), so the same code runs embedded and in team mode.
Only fsspec speaks to S3, with the endpoint from the settings, so one configuration points at
AWS S3, MinIO or a test's moto server. Listings report object metadata (size, ETag, mtime) so
that "did anything change" never needs to download and hash every object.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upath import UPath

from lifecycle_assets.data import valid_json

if TYPE_CHECKING:  # polars is imported by the one reader that needs it: CLI reads start faster
    import polars as pl

    from lifecycle_assets.settings import LifecycleSettings

Location = str | os.PathLike[str]
_REMOTE_OPTIONS_PROTOCOLS = ("s3", "s3a")


def is_remote(location: Location) -> bool:
    """True for a URL of object storage; a local path or `file://` is not remote."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def path(location: Location) -> UPath:
    """A UPath for a stored location string, with the settings' endpoint for S3 URLs.

    Locations written into manifests are plain strings; reading one back must reach the same
    endpoint as the writer, so the options come from the settings, not from the string.
    """
    if isinstance(location, UPath):
        return location
    text = str(location)
    if not is_remote(text):
        return UPath(Path(text.removeprefix("file://")))
    protocol = text.split("://", 1)[0]
    if protocol in _REMOTE_OPTIONS_PROTOCOLS:
        from lifecycle_assets.settings import s3_storage_options

        return UPath(text, **s3_storage_options())
    return UPath(text)


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing knows about one stored object without reading it."""

    path: str
    name: str
    size: int
    etag: str | None
    mtime: float | None

    @property
    def fingerprint(self) -> str:
        """Changes when the object is rewritten: the ETag where the store has one, else mtime."""
        return f"{self.size}:{self.etag or self.mtime}"


def read_bytes(location: Location) -> bytes:
    return path(location).read_bytes()


def read_text(location: Location) -> str:
    return read_bytes(location).decode("utf-8")


def exists(location: Location) -> bool:
    return path(location).exists()


def write_atomic(location: Location, data: bytes) -> None:
    """A reader never sees half an object.

    Locally the bytes are written aside (`.partial` names) and renamed; an object store's PUT
    is already all-or-nothing, so one write is enough there.
    """
    target = path(location)
    if is_remote(target):
        target.write_bytes(data)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(target)


def write_text(location: Location, text: str) -> None:
    write_atomic(location, text.encode("utf-8"))


class CorruptFileError(ValueError):
    """A file the project stored is not what it wrote (overwritten, truncated by hand): the
    message names the file, so a command can say which one in a single line."""


class StorageUnavailableError(ValueError):
    """The object storage the settings name cannot be used (endpoint down, no such bucket, no
    access): said in one line naming the URL and the endpoint, before any run starts."""


def check_available(settings: LifecycleSettings) -> None:
    """Fail now, in one line, when the bucket of the settings' shared storage cannot be reached.

    Without it a wrong endpoint or a bucket nobody created surfaces only inside a Dagster
    step, as an S3 traceback, after the run was queued and started.
    """
    root, url, endpoint = settings.storage_root, settings.storage_url, settings.s3_endpoint_url
    if not url or not is_remote(root):
        return
    bucket = str(root.path).strip("/").split("/", 1)[0]
    where = f"at {endpoint} (AWS_ENDPOINT_URL)" if endpoint else "on AWS S3 (no AWS_ENDPOINT_URL)"
    try:
        root.fs.info(bucket)
    except FileNotFoundError:
        raise StorageUnavailableError(
            f"the shared storage {url} (LIFECYCLE_STORAGE_URL) cannot be used: bucket "
            f"{bucket!r} does not exist {where}; create it first"
        ) from None
    except Exception as error:  # botocore's connection errors are not OSErrors
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageUnavailableError(
            f"the shared storage {url} (LIFECYCLE_STORAGE_URL) cannot be used {where}: {reason}"
        ) from None


def read_json(location: Location) -> Any:
    """The stored JSON value; CorruptFileError naming the file when it does not parse."""
    try:
        return json.loads(read_bytes(location))
    except json.JSONDecodeError as error:
        raise CorruptFileError(
            f"the stored file {location} is corrupt (not JSON: {error.msg} at line "
            f"{error.lineno}); restore it, or delete it and run `lifecycle run --refresh`"
        ) from error


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 of bytes as hex: how every stored file's digest is written down."""
    return hashlib.sha256(data).hexdigest()


def json_bytes(value: Any, **dumps: Any) -> bytes:
    """Strict JSON (NaN and infinities as null, the project's one rule), indented: the bytes
    `write_json` writes, for a caller that must hash them before writing (`verdicts.py`)."""
    return valid_json.dumps(value, indent=2, **dumps).encode("utf-8")


def write_json(location: Location, value: Any, **dumps: Any) -> bytes:
    """`json_bytes` of `value`, written atomically; returns the bytes written (a caller that
    hashes them need not read the object back)."""
    data = json_bytes(value, **dumps)
    write_atomic(location, data)
    return data


def read_parquet(location: Location) -> pl.DataFrame:
    """Parquet through the bytes, so every store fsspec reaches works the same way."""
    import polars as pl

    return pl.read_parquet(io.BytesIO(read_bytes(location)))


@contextlib.contextmanager
def local_folder(location: Location) -> Iterator[Path]:
    """The folder as a local path, for APIs that walk the disk (MLflow's `log_artifacts`).

    A local folder is itself; a remote one is downloaded to a temporary folder for the block.
    """
    folder = path(location)
    if not is_remote(folder):
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory(prefix="lifecycle-storage-") as tmp:
        for info in list_objects(folder):
            (Path(tmp) / info.name).write_bytes(read_bytes(info.path))
        yield Path(tmp)


def list_objects(folder: Location, suffix: str = "") -> list[ObjectInfo]:
    """The files directly in `folder` whose names end with `suffix`, sorted by name.

    A missing folder lists as empty: object stores have no empty folders to create first.
    """
    root = path(folder)
    try:
        entries = root.fs.ls(root.path, detail=True)
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") != "file" or not name.endswith(suffix) or name.startswith("."):
            continue
        found.append(
            ObjectInfo(
                path=str(root / name),
                name=name,
                size=int(entry.get("size") or 0),
                etag=_etag(entry),
                mtime=_mtime(entry),
            )
        )
    return sorted(found, key=lambda info: info.name)


def _etag(entry: dict[str, Any]) -> str | None:
    etag = entry.get("ETag") or entry.get("etag")
    return str(etag).strip('"') if etag else None


def _mtime(entry: dict[str, Any]) -> float | None:
    value = entry.get("mtime", entry.get("LastModified"))
    if value is None:
        return None
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def put_file(local: Location, location: Location) -> None:
    """Copy a local file to `location` in chunks (a Bento archive need not fit in memory);
    locally through a `.partial` name and a rename, as `write_atomic` does."""
    target = path(location)
    if is_remote(target):
        target.fs.put_file(str(local), target.path)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copyfile(local, partial)
    partial.replace(target)


def get_file(location: Location, local: Location) -> None:
    """Copy the object at `location` to a local file, in chunks."""
    source = path(location)
    if is_remote(source):
        source.fs.get_file(source.path, str(local))
        return
    shutil.copyfile(Path(source), local)


def list_folders(folder: Location) -> list[str]:
    """The names of the folders directly in `folder` (prefixes, on object storage), sorted.

    A missing folder lists as empty, as in `list_objects`.
    """
    root = path(folder)
    try:
        entries = root.fs.ls(root.path, detail=True)
    except FileNotFoundError:
        return []
    names = (
        entry["name"].rstrip("/").rsplit("/", 1)[-1]
        for entry in entries
        if entry.get("type") == "directory"
    )
    return sorted(name for name in names if name and not name.startswith("."))


def object_info(location: Location) -> ObjectInfo | None:
    """What the store knows about one object without reading it; None when it is missing.

    One HEAD request on S3: cheap enough to ask whether a small shared file (a report) changed.
    """
    target = path(location)
    try:
        entry = target.fs.info(target.path)
    except FileNotFoundError:
        return None
    if entry.get("type") != "file":
        return None
    return ObjectInfo(
        path=str(target),
        name=target.name,
        size=int(entry.get("size") or 0),
        etag=_etag(entry),
        mtime=_mtime(entry),
    )
