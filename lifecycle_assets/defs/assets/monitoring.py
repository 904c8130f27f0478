"""What happened in production: the daily prediction log, read from the service's own log."""

import datetime as dt

import dagster as dg
import polars as pl

from lifecycle_assets.data import prediction_log
from lifecycle_assets.data.lake import PREDICTION_LOGS
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.data import lake_for
from lifecycle_assets.defs.automation import monitoring_freshness
from lifecycle_assets.defs.io_retry import io_retry
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.spec import ModelSpec


def serving_partitions(spec: ModelSpec) -> dg.DailyPartitionsDefinition:
    """Days on which the service may have answered: open-ended, unlike a fixed data window.

    Today is a partition too (`end_offset=1`): reading the day so far and again once it ends
    gives a live view without waiting for midnight.
    """
    return dg.DailyPartitionsDefinition(
        start_date=spec.start_date.isoformat(), timezone="UTC", end_offset=1
    )


def typed_log(rows: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """JSON lines carry whatever type each client sent; the table uses the spec's types."""
    casts = [
        pl.col(f.name).cast(pl.Float64 if f.type == "numeric" else pl.String)
        for f in spec.features
        if f.name in rows.columns
    ]
    return rows.with_columns(casts)


def build_monitoring_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=names.key(spec.name, names.PREDICTION_LOG),
        partitions_def=serving_partitions(spec),
        group_name=spec.name,
        kinds={"bentoml", "parquet"},
        freshness_policy=monitoring_freshness(spec),
        description=f"Every {spec.name} prediction served that day, once per prediction id.",
    )
    @io_retry
    def prediction_log_asset(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> dg.MaterializeResult:
        settings = lifecycle.settings()
        day = dt.date.fromisoformat(context.partition_key)
        scan = prediction_log.scan_days(settings, spec.name, day, day)
        rows = typed_log(scan.rows, spec)
        if scan.bad:
            shown = "; ".join(str(b) for b in scan.bad[:5])
            context.log.warning(f"{scan.summary()}: {shown}")
        entry = lake_for(lifecycle, spec).store_daily(PREDICTION_LOGS, context.partition_key, rows)
        # Rows per version and role: a shadow's rows are logged beside the answers, never sent.
        by = [c for c in ("model_version", "variant") if c in rows.columns]
        versions = rows.group_by(by).len().sort(by).to_dicts() if "model_version" in by else []
        answers = prediction_log.answered(rows).height
        return dg.MaterializeResult(
            data_version=dg.DataVersion(entry["sha256"]),
            metadata={
                "rows": rows.height,
                "answered_rows": answers,
                "shadow_rows": rows.height - answers,
                "log_segments": scan.files,
                # Skipped lines, each copied to the quarantine with its file, line and reason.
                "bad_lines": len(scan.bad),
                "bad_line_reports": dg.MetadataValue.json(
                    {"lines": [str(b) for b in scan.bad[:20]], "reports": scan.quarantine_reports}
                ),
                "sha256": entry["sha256"],
                "predictions_per_version": dg.MetadataValue.json(versions),
                "path": dg.MetadataValue.path(entry["path"]),
            },
        )

    return [prediction_log_asset]
