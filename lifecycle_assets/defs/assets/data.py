"""Daily raw batches (content-addressed, validated, quarantined on failure) and their features.

The per-day work lives in `data.ingest`; these assets only run it, one day or a whole window of
days in one run (single-run backfill policy), and describe each day's result. A day with no rows
materializes nothing (a calendar gap is not data).
"""

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from lifecycle_assets.data.fingerprint import Fingerprint, fingerprint
from lifecycle_assets.data.ingest import featurize_day, ingest_day, quarantine_undated
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.defs import names
from lifecycle_assets.defs.io_retry import io_retry
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.spec import ModelSpec


def lake_for(lifecycle: LifecycleResource, spec: ModelSpec) -> Lake:
    settings = lifecycle.settings()
    return Lake(settings.lake_dir, settings.quarantine_dir, spec.name)


def each_day(
    context: dg.AssetExecutionContext, one_day: Callable[[str], dg.MaterializeResult | None]
) -> Iterator[dg.MaterializeResult]:
    """Run `one_day` for every partition of the run: one day, or a whole window in one run.

    Each day keeps its own metadata (its SHA-256, rows, status, path). Dagster records one
    data version per step (dagster-io/dagster#18649): a one-day run's is the day's SHA-256, a
    window's is the digest of its days' SHA-256s, so it changes exactly when a day's does. Days
    without rows (`one_day` returns None) add nothing; a run of only such days materializes
    nothing.
    """
    versions = {}
    for day in context.partition_keys:
        result = one_day(day)
        if result is None:
            continue
        context.add_asset_metadata(dict(result.metadata or {}), partition_key=day)
        versions[day] = result.data_version.value
    if not versions:
        return
    if len(versions) == 1:
        yield dg.MaterializeResult(data_version=dg.DataVersion(next(iter(versions.values()))))
        return
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()
    yield dg.MaterializeResult(
        data_version=dg.DataVersion(digest), metadata={"days_in_run": len(versions)}
    )


def ingest_one_day(
    context: dg.AssetExecutionContext,
    lifecycle: LifecycleResource,
    spec: ModelSpec,
    key: str,
    current: Fingerprint | None = None,
    extra: dict[str, Any] | None = None,
) -> dg.MaterializeResult | None:
    """Read, validate and store one day; a bad batch is quarantined, not raised. `current` is
    the run's fingerprint, taken once for all its days (it hashes the source files); `extra`
    is metadata of the whole run every day carries (the source's rows of no day)."""
    outcome = ingest_day(spec, lake_for(lifecycle, spec), key, current, context.run_id)
    if outcome.record is None:
        context.log.info(outcome.reason)
        return None
    record = outcome.record
    if record.status != "accepted":
        context.log.warning(f"quarantined {outcome.day}: {outcome.reason} -> {record.path}")
    source = outcome.source
    return dg.MaterializeResult(
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
            **(extra or {}),
        },
    )


def featurize_one_day(
    lifecycle: LifecycleResource, spec: ModelSpec, key: str
) -> dg.MaterializeResult:
    """Compute and store the features of one day's accepted batch."""
    lake = lake_for(lifecycle, spec)
    try:
        entry = featurize_day(spec, lake, key)
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
        # A window of days is one run (UI backfills, `lifecycle run`), not one run per day.
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"One day of raw {spec.name} rows, stored by SHA-256; bad batches quarantined.",
    )
    @io_retry
    def raw_batches(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> Iterator[dg.MaterializeResult]:
        current = fingerprint(spec)
        # Rows of no day are looked for once per run, over the whole source: no day's read
        # would see them.
        undated = quarantine_undated(spec, lake_for(lifecycle, spec), current, context.run_id)
        extra: dict[str, Any] = {"undated_rows": undated["rows"] if undated else 0}
        if undated:
            context.log.warning(f"quarantined {undated['summary']} -> {undated['path']}")
            extra["undated_quarantine"] = dg.MetadataValue.path(undated["path"])
        yield from each_day(
            context, lambda day: ingest_one_day(context, lifecycle, spec, day, current, extra)
        )

    @dg.asset(
        key=names.key(spec.name, names.FEATURES),
        deps=[raw_batches],
        partitions_def=partitions,
        group_name=spec.name,
        kinds={"polars", "parquet"},
        output_required=False,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"Model inputs of {spec.name} for one day, from the shared feature code.",
    )
    def features(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> Iterator[dg.MaterializeResult]:
        yield from each_day(context, lambda day: featurize_one_day(lifecycle, spec, day))

    return [raw_batches, features]
