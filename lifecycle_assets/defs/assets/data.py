"""Daily raw batches (content-addressed, validated, quarantined on failure) and their features."""

import datetime as dt

import dagster as dg

from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.sources import read_day
from lifecycle_assets.defs import names
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.ml.features import feature_table
from lifecycle_assets.ml.schemas import validate_raw
from lifecycle_assets.spec import ModelSpec


def lake_for(lifecycle: LifecycleResource, spec: ModelSpec) -> Lake:
    settings = lifecycle.settings()
    return Lake(settings.lake_dir, settings.quarantine_dir, spec.name)


def build_data_assets(
    spec: ModelSpec, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """The two daily-partitioned assets of one model."""

    @dg.asset(
        key=names.key(spec.name, names.RAW_BATCHES),
        partitions_def=partitions,
        group_name=spec.name,
        kinds={"polars", "parquet"},
        description=f"One day of raw {spec.name} rows, stored by SHA-256; bad batches quarantined.",
    )
    def raw_batches(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        frame, source = read_day(spec, day)
        if frame.is_empty():
            # A day without rows is recorded as such (weekends, holidays), not treated as an error.
            context.log.warning(f"source {source} has no rows for {day}")
        typed, report = validate_raw(frame, spec)
        record = lake_for(lifecycle, spec).store_batch(
            context.partition_key, typed if report.passed else frame, source, report.to_dict()
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

    @dg.asset(
        key=names.key(spec.name, names.FEATURES),
        deps=[raw_batches],
        partitions_def=partitions,
        group_name=spec.name,
        kinds={"polars", "parquet"},
        description=f"Model inputs of {spec.name} for one day, from the shared feature code.",
    )
    def features(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> dg.MaterializeResult:
        lake = lake_for(lifecycle, spec)
        record = lake.batch(context.partition_key)
        if record is None:
            raise dg.Failure(f"no raw batch for {context.partition_key}: materialize raw first")
        if record.status != "accepted":
            raise dg.Failure(
                f"raw batch {context.partition_key} is quarantined ({record.path}): "
                f"{(record.report or {}).get('summary', '')}",
                allow_retries=False,
            )
        table = feature_table(lake.read_batch(record), spec)
        entry = lake.store_features(context.partition_key, table, record.sha256)
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

    return [raw_batches, features]
