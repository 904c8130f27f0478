"""Daily raw batches (content-addressed, validated, quarantined on failure) and their features.

The per-day work lives in `data.ingest`; these assets only run it and describe the result. A day
with no rows materializes nothing (a calendar gap is not data), so nothing downstream runs.
"""

from collections.abc import Iterator

import dagster as dg

from lifecycle_assets.data.ingest import featurize_day, ingest_day
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.defs import names
from lifecycle_assets.defs.resources import LifecycleResource
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
        output_required=False,
        description=f"One day of raw {spec.name} rows, stored by SHA-256; bad batches quarantined.",
    )
    def raw_batches(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> Iterator[dg.MaterializeResult]:
        outcome = ingest_day(spec, lake_for(lifecycle, spec), context.partition_key)
        if outcome.record is None:
            context.log.info(outcome.reason)
            return
        record = outcome.record
        if record.status != "accepted":
            context.log.warning(f"quarantined {outcome.day}: {outcome.reason} -> {record.path}")
        source = outcome.source
        yield dg.MaterializeResult(
            data_version=dg.DataVersion(record.sha256),
            metadata={
                "sha256": record.sha256,
                "source": dg.MetadataValue.url(source) if "://" in source else source,
                "rows": record.rows,
                "status": record.status,
                "path": dg.MetadataValue.path(record.path),
                "validation": outcome.reason,
                "schema": dg.MetadataValue.json(record.schema),
                "fingerprint": (record.fingerprint or {}).get("digest", ""),
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
        try:
            entry = featurize_day(spec, lake, context.partition_key)
        except LookupError as error:
            raise dg.Failure(str(error), allow_retries=False) from error
        table = lake.read_verified(entry["path"], entry["sha256"])
        return dg.MaterializeResult(
            data_version=dg.DataVersion(entry["sha256"]),
            metadata={
                "sha256": entry["sha256"],
                "raw_sha256": entry["raw_sha256"],
                "rows": table.height,
                "columns": dg.MetadataValue.json(spec.feature_names),
                "null_counts": dg.MetadataValue.json(
                    {k: v for k, v in table.null_count().row(0, named=True).items() if v}
                ),
                "path": dg.MetadataValue.path(entry["path"]),
            },
        )

    return [raw_batches, features]
