"""Daily raw batches (content-addressed, validated, quarantined on failure) and their features."""

import datetime as dt
import hashlib
import json
from collections.abc import Callable

import dagster as dg

from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.sources import read_day
from lifecycle_assets.defs import names
from lifecycle_assets.defs.automation import IO_RETRY
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.ml.features import feature_table
from lifecycle_assets.ml.schemas import validate_raw
from lifecycle_assets.spec import ModelSpec


def lake_for(lifecycle: LifecycleResource, spec: ModelSpec) -> Lake:
    settings = lifecycle.settings()
    return Lake(settings.lake_dir, settings.quarantine_dir, spec.name)


def each_day(
    context: dg.AssetExecutionContext, one_day: Callable[[str], dg.MaterializeResult]
) -> dg.MaterializeResult:
    """Run `one_day` for every partition of the run: one day, or a whole window in one run.

    Each day keeps its own metadata (its SHA-256, rows, status, path). Dagster records one
    data version per step (dagster-io/dagster#18649): a one-day run's is the day's SHA-256, a
    window's is the digest of its days' SHA-256s, so it changes exactly when a day's does.
    """
    versions = {}
    for day in context.partition_keys:
        result = one_day(day)
        context.add_asset_metadata(dict(result.metadata or {}), partition_key=day)
        versions[day] = result.data_version.value
    if len(versions) == 1:
        return dg.MaterializeResult(data_version=dg.DataVersion(next(iter(versions.values()))))
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest), metadata={"days_in_run": len(versions)}
    )


def ingest_one_day(
    context: dg.AssetExecutionContext, lifecycle: LifecycleResource, spec: ModelSpec, key: str
) -> dg.MaterializeResult:
    """Read, validate and store one day; a bad batch is quarantined, not raised."""
    day = dt.date.fromisoformat(key)
    frame, source = read_day(spec, day)
    if frame.is_empty():
        # A day without rows is recorded as such (weekends, holidays), not treated as an error.
        context.log.warning(f"source {source} has no rows for {day}")
    typed, report = validate_raw(frame, spec)
    record = lake_for(lifecycle, spec).store_batch(
        key, typed if report.passed else frame, source, report.to_dict()
    )
    if not report.passed:
        context.log.warning(f"quarantined {day}: {report.summary()} -> {record.path}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(record.sha256),
        metadata={
            "sha256": record.sha256,
            "source": dg.MetadataValue.url(source) if "://" in source else source,
            "rows": record.rows,
            "status": record.status,
            "path": dg.MetadataValue.path(record.path),
            "validation": report.summary(),
            "schema": dg.MetadataValue.json(record.schema),
        },
    )


def featurize_one_day(
    lifecycle: LifecycleResource, spec: ModelSpec, key: str
) -> dg.MaterializeResult:
    """Compute and store the features of one day's accepted batch."""
    lake = lake_for(lifecycle, spec)
    record = lake.batch(key)
    if record is None:
        raise dg.Failure(f"no raw batch for {key}: materialize raw first")
    if record.status != "accepted":
        raise dg.Failure(
            f"raw batch {key} is quarantined ({record.path}): "
            f"{(record.report or {}).get('summary', '')}",
            allow_retries=False,
        )
    table = feature_table(lake.read_batch(record), spec)
    entry = lake.store_features(key, table, record.sha256)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(entry["sha256"]),
        metadata={
            "sha256": entry["sha256"],
            "raw_sha256": record.sha256,
            "rows": table.height,
            "columns": dg.MetadataValue.json(spec.feature_names),
            "null_counts": dg.MetadataValue.json(
                {k: v for k, v in table.null_count().row(0, named=True).items() if v}
            ),
            "path": dg.MetadataValue.path(entry["path"]),
        },
    )


def build_data_assets(
    spec: ModelSpec, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """The two daily-partitioned assets of one model."""

    @dg.asset(
        key=names.key(spec.name, names.RAW_BATCHES),
        partitions_def=partitions,
        group_name=spec.name,
        kinds={"polars", "parquet"},
        # A window of days is one run (UI backfills, `lifecycle run`), not one run per day.
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=IO_RETRY,
        description=f"One day of raw {spec.name} rows, stored by SHA-256; bad batches quarantined.",
    )
    def raw_batches(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> dg.MaterializeResult:
        return each_day(context, lambda day: ingest_one_day(context, lifecycle, spec, day))

    @dg.asset(
        key=names.key(spec.name, names.FEATURES),
        deps=[raw_batches],
        partitions_def=partitions,
        group_name=spec.name,
        kinds={"polars", "parquet"},
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"Model inputs of {spec.name} for one day, from the shared feature code.",
    )
    def features(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> dg.MaterializeResult:
        return each_day(context, lambda day: featurize_one_day(lifecycle, spec, day))

    return [raw_batches, features]
