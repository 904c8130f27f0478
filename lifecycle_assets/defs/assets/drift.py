"""The daily drift report: the day's served traffic against the serving version's profile."""

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl

from lifecycle_assets.data.lake import PREDICTION_LOGS, Lake
from lifecycle_assets.data.prediction_log import answered
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.data import lake_for
from lifecycle_assets.defs.assets.monitoring import serving_partitions
from lifecycle_assets.defs.automation import monitoring_freshness
from lifecycle_assets.defs.io_retry import io_retry
from lifecycle_assets.defs.metadata import rounded
from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
from lifecycle_assets.ml.drift import drift_report, write_latest_drift
from lifecycle_assets.ml.drift_html import render_drift_html
from lifecycle_assets.ml.features import compute_features
from lifecycle_assets.ml.profile import ReferenceProfile
from lifecycle_assets.registry.refs import get_version
from lifecycle_assets.spec import ModelSpec


def _markdown_table(table: pl.DataFrame) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.iter_rows()]
    return "\n".join(lines)


def judged_version(log: pl.DataFrame) -> tuple[str, dict[str, int]]:
    """The version whose profile judges the day, and the answered rows of each version.

    The champion's (the version that answered most champion rows): a canary that happened to
    answer more rows on a 50% split must not become the yardstick. A log without variants
    falls back to the version that answered most.
    """
    versions = log["model_version"].cast(pl.String).fill_null("unknown")
    per_version = dict(sorted(versions.value_counts().iter_rows(), key=lambda kv: kv[0]))
    judged = versions
    if "variant" in log.columns:
        champion = versions.filter(log["variant"].cast(pl.String) == "champion")
        judged = champion if champion.len() else versions
    return judged.mode().sort().item(0), per_version


def build_drift_assets(spec: ModelSpec) -> list:
    """`drift_report` and its non-blocking warning check."""

    @dg.asset(
        key=names.key(spec.name, names.DRIFT_REPORT),
        deps=[names.key(spec.name, names.PREDICTION_LOG)],
        partitions_def=serving_partitions(spec),
        group_name=spec.name,
        kinds={"polars", "html"},
        freshness_policy=monitoring_freshness(spec),
        io_manager_key="json_io_manager",
        description=f"Drift of the day's {spec.name} inputs and scores against the training "
        "profile of the version that served them.",
    )
    @io_retry
    def drift_report_asset(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource, mlflow: MlflowResource
    ) -> dg.Output[dict[str, Any]]:
        settings = lifecycle.settings()
        entry = lake_for(lifecycle, spec).daily_entry(PREDICTION_LOGS, context.partition_key)
        if entry is None:
            raise dg.Failure(
                f"no prediction_log for {context.partition_key}: materialize it first",
                allow_retries=False,
            )
        log = answered(Lake.read_verified(entry["path"], entry["sha256"]))
        if log.is_empty():
            value = {"day": context.partition_key, "rows": 0, "drifted": False, "report": None}
            return dg.Output(value, metadata={"rows": 0, "verdict": "no predictions that day"})
        version, per_version = judged_version(log)
        ref = get_version(mlflow.client(), spec.name, version)
        from lifecycle_assets.registry.tracking import load_reference_profile

        profile = ReferenceProfile.from_dict(load_reference_profile(ref))
        # Inputs are the traffic's, whoever answered; a score is its model's own: only that
        # version's scores are compared with its profile (a canary's would read as drift).
        own = log.filter(pl.col("model_version").cast(pl.String) == version)
        scores = own["score"].cast(pl.Float64).to_numpy()
        report = drift_report(compute_features(log, spec), profile, spec.drift_thresholds(), scores)
        # matplotlib loads where plots are drawn, not with the definitions.
        from lifecycle_assets.ml.drift_plots import psi_bars_png, score_distribution_png

        pngs = {
            "PSI by feature": psi_bars_png(report),
            "score distribution": score_distribution_png(profile, scores),
        }
        page = settings.reports_dir / spec.name / "drift" / f"{context.partition_key}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        title = f"{spec.name} v{version} drift on {context.partition_key}"
        page.write_text(render_drift_html(title, report, pngs))
        # The plots as files beside the page: linked from the UI, not inlined in the event.
        plot_paths = {}
        for name, png in pngs.items():
            stem = name.replace(" ", "_")
            path = page.with_name(f"{context.partition_key}-{stem}.png")
            path.write_bytes(png)
            plot_paths[f"plot_{stem}"] = dg.MetadataValue.path(str(path))
        write_latest_drift(settings.reports_dir, spec.name, context.partition_key, report)
        value = {
            "day": context.partition_key,
            "rows": report.rows,
            "model_version": version,
            "rows_per_version": per_version,
            "score_rows": own.height,
            "drifted": report.drifted,
            "drifted_features": report.drifted_features,
            "score_drifted": report.score_drifted,
            "report": report.to_dict(),
            "html": str(page),
            "computed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        return dg.Output(
            value,
            metadata={
                "rows": report.rows,
                "model_version": version,
                "rows_per_version": dg.MetadataValue.json(per_version),
                "score_rows": own.height,
                "drifted": report.drifted,
                "drifted_share": rounded(report.drifted_share),
                "drifted_features": dg.MetadataValue.json(report.drifted_features),
                "table": dg.MetadataValue.md(_markdown_table(report.table())),
                **plot_paths,
                "html_report": dg.MetadataValue.path(str(page)),
                **({"notes": dg.MetadataValue.json(list(report.notes))} if report.notes else {}),
            },
        )

    @dg.asset_check(
        asset=names.key(spec.name, names.DRIFT_REPORT),
        name=names.DRIFT_CHECK,
        partitions_def=serving_partitions(spec),
        description="Warns when the day's traffic drifted from the training profile.",
    )
    def no_data_drift(
        lifecycle: LifecycleResource, drift_report: dict[str, Any]
    ) -> dg.AssetCheckResult:
        features = drift_report.get("drifted_features", [])
        report = drift_report.get("report") or {}
        return dg.AssetCheckResult(
            passed=not drift_report["drifted"],
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"drift in {features or 'the score'}"
                if drift_report["drifted"]
                else f"no drift over {drift_report['rows']} predictions"
            ),
            metadata={
                "actual": report.get("drifted_share", 0.0),
                "threshold": spec.drift_thresholds().drifted_share,
            },
        )

    return [drift_report_asset, no_data_drift]
