"""The training set: a time-split window of feature partitions, snapshotted by SHA-256 digest."""

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl

from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.data import lake_for
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.ml.training import SPLITS, assign_splits, time_split
from lifecycle_assets.spec import ModelSpec


def window_days(available: list[str], spec: ModelSpec) -> list[str]:
    """The newest `window_days` days that have features, up to the spec's end date."""
    end = spec.end_date.isoformat() if spec.end_date else "9999-12-31"
    eligible = [day for day in sorted(available) if day <= end]
    return eligible[-spec.training.window_days :]


def split_stats(table: pl.DataFrame, spec: ModelSpec) -> dict[str, dict[str, int]]:
    """Rows per split, with positives (classifiers) or distinct target values (regressors)."""
    stats = {}
    for split in SPLITS:
        target = table.filter(pl.col("split") == split)[spec.target]
        stats[split] = {"rows": target.len()}
        if spec.is_classifier:
            stats[split]["positives"] = int(target.sum() or 0)
        else:
            stats[split]["distinct"] = target.drop_nulls().n_unique()
    return stats


def build_training_set_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    """The training set snapshot of one model."""

    @dg.asset(
        key=names.key(spec.name, names.TRAINING_SET),
        deps=[names.key(spec.name, names.FEATURES)],
        group_name=spec.name,
        kinds={"polars", "parquet"},
        io_manager_key="json_io_manager",
        description="A time-split window of feature partitions, snapshotted by SHA-256 digest.",
    )
    def training_set(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> dg.Output[dict[str, Any]]:
        lake = lake_for(lifecycle, spec)
        days = window_days(lake.feature_days(), spec)
        if len(days) < 3:
            raise dg.Failure(f"only {len(days)} day(s) of features; materialize more partitions")
        entries = [lake.feature_entry(day) for day in days]
        table = pl.concat([lake.read_verified(e["path"], e["sha256"]) for e in entries])
        split = time_split([dt.date.fromisoformat(d) for d in days], spec)
        table = assign_splits(table, split, spec)
        digests = {
            s: lake.put(table.filter(pl.col("split") == s), "training_sets")[0] for s in SPLITS
        }
        stats = split_stats(table, spec)
        manifest = lake.store_training_set(
            table,
            {
                "model": spec.name,
                "days": days,
                "split_days": {s: [d.isoformat() for d in split.days(s)] for s in SPLITS},
                "split_digests": digests,
                "split_stats": stats,
                "feature_partitions": {e["day"]: e["sha256"] for e in entries},
                "raw_batches": {e["day"]: e["raw_sha256"] for e in entries},
                "dagster_run_id": context.run_id,
            },
        )
        context.log.info(f"training set {manifest['digest'][:12]}: {table.height} rows")
        return dg.Output(
            manifest,
            data_version=dg.DataVersion(manifest["digest"]),
            metadata={
                "digest": manifest["digest"],
                "rows": table.height,
                "window": f"{days[0]} .. {days[-1]} ({len(days)} days)",
                "split_stats": dg.MetadataValue.json(stats),
                "split_digests": dg.MetadataValue.json(digests),
                "path": dg.MetadataValue.path(manifest["path"]),
            },
        )

    return training_set
