"""The data links of a model version: its training-set snapshot, and per day the feature
partition and the raw batch beneath it, each file re-hashed in the content-addressed lake.
"""

from __future__ import annotations

from pathlib import Path

from lifecycle_assets.data.lake import Lake
from lifecycle_assets.provenance.links import (
    BROKEN,
    FEATURES,
    MISSING,
    OK,
    RAW_BATCH,
    TRAINING_SET,
    Link,
    file_link,
)
from lifecycle_assets.registry.reader import RunRecord


def _object_path(lake: Lake, kind: str, sha: str) -> Path:
    # The lake names every object by its hash (Lake.put): a day's manifest may have moved on to
    # a newer object since, but the object the training set recorded is still at this path.
    return lake.root / kind / "objects" / f"{sha}.parquet"


def training_set_link(
    lake: Lake, digest: str, run: RunRecord | None, via: str
) -> tuple[Link, dict | None]:
    """The training-set snapshot: manifest, file hash, and the split digests the run logged."""
    try:
        manifest = lake.training_manifest(digest)
    except FileNotFoundError:
        return Link(TRAINING_SET, digest, MISSING, "no manifest in the lake", via=via), None
    keys = ("days", "split_stats", "split_digests", "dagster_run_id")
    details = {k: manifest.get(k) for k in keys}
    link = file_link(TRAINING_SET, digest, manifest["path"], digest, details, via)
    logged = {} if run is None else {
        name.rsplit("-", 1)[-1]: tags.get("sha256") for name, tags in run.datasets.items()
    }  # fmt: skip
    for split, sha in (manifest.get("split_digests") or {}).items():
        if link.status == OK and split in logged and logged[split] != sha:
            reason = f"the run logged {split} split {logged[split]}, the manifest records {sha}"
            link = Link(link.kind, link.id, BROKEN, reason, link.details, via)
    return link, manifest


def feature_link(lake: Lake, day: str, sha: str, raw_sha: str | None, via: str) -> Link:
    current = lake.feature_entry(day) or {}
    details = {"day": day, "current": current.get("sha256") == sha}
    link = file_link(FEATURES, f"{day}/{sha}", _object_path(lake, FEATURES, sha), sha, details, via)
    derived_from = current.get("raw_sha256") if details["current"] else None
    if link.status == OK and raw_sha and derived_from and derived_from != raw_sha:
        reason = f"features of {day} were derived from raw {derived_from}, not {raw_sha}"
        return Link(link.kind, link.id, BROKEN, reason, link.details, via)
    return link


def raw_link(lake: Lake, day: str, sha: str, via: str) -> Link:
    """One raw batch: its file, source URI and validation result, as recorded at ingestion."""
    record = lake.batch(day)
    if record is not None and record.sha256 == sha:
        path, report = record.path, record.report or {}
        details = {
            "day": day, "source": record.source, "rows": record.rows, "status": record.status,
            "ingested_at": record.ingested_at, "validation": report.get("summary", ""),
            "validation_passed": report.get("passed"), "current": True,
        }  # fmt: skip
    else:
        path = str(_object_path(lake, "raw", sha))
        details = {"day": day, "current": False, "current_sha256": record and record.sha256}
    link = file_link(RAW_BATCH, f"{day}/{sha}", path, sha, details, via)
    if link.status == OK and details.get("status", "accepted") != "accepted":
        reason = f"the batch of {day} was {details['status']}, yet the training set used it"
        return Link(link.kind, link.id, BROKEN, reason, link.details, via)
    return link


def data_links(lake: Lake, digest: str, run: RunRecord | None, via: str) -> list[Link]:
    """Training set, then per day its feature partition and the raw batch beneath it."""
    training, manifest = training_set_link(lake, digest, run, via)
    links = [training]
    if manifest is None:
        return links
    features = manifest.get("feature_partitions") or {}
    raws = manifest.get("raw_batches") or {}
    for day in manifest.get("days", sorted(raws)):
        parent = training.key
        if day in features:
            links.append(feature_link(lake, day, features[day], raws.get(day), training.key))
            parent = links[-1].key
        if day in raws:
            links.append(raw_link(lake, day, raws[day], parent))
        else:
            links.append(Link(RAW_BATCH, day, MISSING, "no raw batch recorded", via=parent))
    return links
