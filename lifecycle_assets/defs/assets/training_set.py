"""The training set: a split window of fresh, accepted feature partitions, snapshotted by digest.

Days whose newest batch was quarantined (or whose stored partition no longer matches its inputs)
are left out, never replaced by older data, and counted in the manifest for the
`quarantined_share_within_limit` gate, as are the source's quarantined rows of no day.
"""

import datetime as dt
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from lifecycle_assets import config
from lifecycle_assets.data.fingerprint import Fingerprint, fingerprint, model_spec_hash
from lifecycle_assets.data.ingest import featurize_day, read_features, select_window, window_keys
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.lake_reconcile import LakeAudit, audit_window
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.data import lake_for
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.ml.training import SPLITS, assign_splits, snapshot_split, time_split
from lifecycle_assets.registry.refs import ModelRef, resolve
from lifecycle_assets.spec import ModelSpec

if TYPE_CHECKING:
    from mlflow import MlflowClient


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


def unchanged_champion(
    client: "MlflowClient", spec: ModelSpec, training_set: dict[str, Any]
) -> ModelRef | None:
    """The champion when it was trained on this very training set under the same model spec:
    training again would register a copy of it, so nothing is registered or promoted."""
    champion = resolve(client, spec.name, config.CHAMPION_ALIAS)
    return champion if champion is not None and trained_on(champion, training_set) else None


def trained_on(champion: ModelRef, training_set: dict[str, Any]) -> bool:
    """Whether `champion` was trained on this very training set under the same model spec (for
    a caller that already resolved the champion, so the registry is read once)."""
    same_set = champion.training_digest == training_set["digest"]
    same_spec = champion.tags.get(config.TAG_MODEL_SPEC) == training_set.get("model_spec_sha256")
    return same_set and same_spec


def checked_lake(
    context: dg.AssetExecutionContext, spec: ModelSpec, lake: Lake, current: Fingerprint
) -> LakeAudit:
    """The window's lake checked against its manifests before it is read: damage is logged by
    name, features are rebuilt from their verified raw batches, and a raw batch the source
    cannot give back refuses the run (`data.lake_reconcile`)."""
    audit = audit_window(spec, lake, window_keys(spec), current, run_id=context.run_id)
    for line in audit.lines():
        context.log.warning(line)
    if audit.refused:
        raise dg.Failure(
            f"{names.REFUSAL_PREFIX}{audit.refusal()}",
            metadata={names.REFUSED_METADATA_KEY: True},
            allow_retries=False,
        )
    for day, why in sorted(audit.rebuild.items()):
        entry = featurize_day(spec, lake, day)
        context.log.warning(f"rebuilt the features of {day} ({why}) -> {entry['path']}")
    return audit


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
        current = fingerprint(spec)
        audit = checked_lake(context, spec, lake, current)
        selection = select_window(lake, spec, current)
        days = selection.days
        if selection.quarantined or selection.stale:
            context.log.warning(
                f"{len(selection.quarantined)} of {len(selection.window)} window day(s) "
                f"quarantined {selection.quarantined}, {len(selection.stale)} stale "
                f"{selection.stale}: left out of training"
            )
        if selection.undated_rows:
            context.log.warning(f"quarantined, in no day: {selection.undated}")
        if len(days) < (1 if spec.is_snapshot else 3):
            raise dg.Failure(
                f"{len(days)} usable day(s) of data in the window of {len(selection.window)} "
                f"({len(selection.quarantined)} quarantined, {len(selection.stale)} stale); "
                "a time split needs 3: fix the quarantined data (see the quarantine reports) "
                "or ingest more days",
                allow_retries=False,
            )
        table, entries = read_features(lake, days)
        if spec.is_snapshot:
            table = snapshot_split(table, spec)
            split_days = {s: days for s in SPLITS}
        else:
            split = time_split([dt.date.fromisoformat(d) for d in days], spec)
            table = assign_splits(table, split, spec)
            split_days = {s: [d.isoformat() for d in split.days(s)] for s in SPLITS}
        digests = {
            s: lake.put(table.filter(pl.col("split") == s), "training_sets")[0] for s in SPLITS
        }
        stats = split_stats(table, spec)
        manifest = lake.store_training_set(
            table,
            {
                "model": spec.name,
                "days": days,
                "split_days": split_days,
                "split": "stratified random (snapshot)" if spec.is_snapshot else "by time",
                "split_digests": digests,
                "split_stats": stats,
                "quarantine": selection.to_dict(),
                "model_spec_sha256": model_spec_hash(spec),
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
                "quarantined_days": len(selection.quarantined),
                "lake_check": dg.MetadataValue.json(audit.to_dict()),
                "undated_rows": selection.undated_rows,
                "split_stats": dg.MetadataValue.json(stats),
                "split_digests": dg.MetadataValue.json(digests),
                "path": dg.MetadataValue.path(manifest["path"]),
            },
        )

    return training_set
