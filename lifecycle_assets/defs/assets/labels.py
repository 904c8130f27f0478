"""Delayed labels: the ground truth that arrived each day, and the live performance it reveals."""

import datetime as dt
import math

import dagster as dg
import polars as pl

from lifecycle_assets.data import ground_truth
from lifecycle_assets.data.lake import PREDICTION_LOGS, Lake
from lifecycle_assets.data.prediction_log import answered
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.data import lake_for
from lifecycle_assets.defs.assets.monitoring import serving_partitions
from lifecycle_assets.defs.automation import monitoring_freshness
from lifecycle_assets.defs.io_retry import io_retry
from lifecycle_assets.defs.metadata import rounded
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.ml import live_performance
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.spec import ModelSpec


def labels_received(lake: Lake) -> pl.DataFrame:
    """Every label stored so far, the last one per prediction id.

    Not only the days up to the partition: a day's labels arrive after it, so re-materializing
    an old day once they are in is how its realized performance appears.
    """
    frames = []
    for day in lake.daily_days(ground_truth.GROUND_TRUTH):
        entry = lake.daily_entry(ground_truth.GROUND_TRUTH, day) or {}
        frames.append(Lake.read_verified(entry["path"], entry["sha256"]))
    if not frames:
        return pl.DataFrame(schema=ground_truth.LABEL_SCHEMA)
    return ground_truth.latest_labels(pl.concat(frames))


# A regressor's scores promise no outcome distribution, so its errors are what it has to show.
_REGRESSION_ERRORS = ("rmse", "mae")


def _realized_text(entry: dict, metric: str) -> str:
    realized = entry["realized"] or {}
    value, gap = realized.get(metric), (entry["gap"] or {}).get(metric)
    errors = "".join(
        f", {name} {realized[name]:.3f}"
        for name in _REGRESSION_ERRORS
        if name != metric and realized.get(name) is not None
    )
    if value is None:
        return f"{metric} undefined on the labels arrived so far{errors}"
    gap_text = f" (realized minus estimated {gap:+.3f})" if gap is not None else ""
    return f"realized {metric} {value:.3f}{gap_text}{errors}"


def _coverage_text(labelled: int, rows: int) -> str:
    """The labelled share to one decimal, rounded towards the nearer end it has not reached:
    400 of 401 is 99.7%, never "100%", and 1 of 2000 is 0.1%, never "0%"."""
    if labelled in (0, rows):
        return f"{labelled / rows:.0%}"
    tenths = min(max(math.floor(1000 * labelled / rows), 1), 999)
    return f"{tenths / 10:.1f}%"


def _version_text(entry: dict, metric: str) -> str:
    name = f"v{entry['model_version']}"
    if not entry["labelled_rows"]:
        return f"{name} has no label yet on its {entry['rows']} prediction(s)"
    return f"{name} {_realized_text(entry, metric)} on {entry['labelled_rows']} labels"


def _summary(day: str, report: dict, metric: str) -> str:
    overall = report["overall"]
    if overall is None:
        return f"No predictions were logged on {day}: nothing to measure."
    if not report["labelled_rows"]:
        shown = (
            "realized errors appear once they do"
            if report.get("task") == "regression"
            else "only the performance estimated from the calibrated probabilities is shown"
        )
        return (
            f"Labels have not arrived yet for the {report['rows']} predictions of {day}: "
            f"{shown}.{_premature_text(report)}"
        )
    versions = report["versions"]
    if len(versions) == 1:
        measured = _realized_text(overall, metric)
    else:
        # Scores of two models pooled rank like neither: each version is measured on its own.
        measured = "; ".join(_version_text(e, metric) for e in versions)
    coverage = _coverage_text(report["labelled_rows"], report["rows"])
    return (
        f"{report['labelled_rows']}/{report['rows']} predictions of {day} labelled "
        f"({coverage}): {measured}.{_premature_text(report)}"
    )


def _premature_text(report: dict) -> str:
    count = report.get("premature_labels", 0)
    if not count:
        return ""
    return (
        f" {count} label(s) stamped before their prediction, not used (a wrong clock or id in "
        "a label file: see `premature_labels`)."
    )


def _metadata(day: str, report: dict, label_days: int, metric: str) -> dict:
    coverage = report["label_coverage"]
    metadata = {
        "summary": _summary(day, report, metric),
        "rows": report["rows"],
        "labelled_rows": report["labelled_rows"],
        "premature_labels": report.get("premature_labels", 0),
        "label_coverage": rounded(coverage) if coverage is not None else None,
        "label_days_read": label_days,
        "performance": dg.MetadataValue.md(live_performance.report_markdown(report)),
    }
    versions = report["versions"]
    # The plain keys only when one version answered: then they are its numbers. On a canary day
    # every version has its own keys: the metric of pooled scores of two models is neither's.
    headline = [("", report["overall"] or {})] if len(versions) == 1 else []
    headline += [(f"v{e['model_version']}_", e) for e in versions]
    headline += [(f"shadow_v{e['model_version']}_", e) for e in report.get("shadow", [])]
    for prefix, entry in headline:
        realized, estimated, gap = (entry.get(k) or {} for k in ("realized", "estimated", "gap"))
        # Only metrics that exist: a realized AUC of 0.0 before labels arrive would be a lie.
        for name, value in (
            (f"{prefix}realized_{metric}", realized.get(metric)),
            (f"{prefix}estimated_{metric}", estimated.get(metric)),
            (f"{prefix}{metric}_gap", gap.get(metric)),
        ):
            if value is not None:
                metadata[name] = dg.MetadataValue.float(rounded(float(value)))
    return metadata


def build_label_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    """The ground truth and live performance assets of one model, on the serving days."""
    partitions = serving_partitions(spec)

    @dg.asset(
        key=names.key(spec.name, names.GROUND_TRUTH),
        partitions_def=partitions,
        group_name=spec.name,
        kinds={"polars", "parquet"},
        freshness_policy=monitoring_freshness(spec),
        description=f"Labels of {spec.name} predictions that arrived that day, last one per id.",
    )
    @io_retry
    def ground_truth_asset(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> dg.MaterializeResult:
        settings = lifecycle.settings()
        folder = ground_truth.labels_folder(settings.landing_dir, spec.name)
        day = dt.date.fromisoformat(context.partition_key)
        quarantine_to = ground_truth.labels_quarantine(settings.quarantine_dir, spec.name)
        found = ground_truth.arrivals(folder, day, spec, quarantine_to)
        labels, sources = found.labels, found.sources
        if found.problems:
            # Bad files and rows are set aside (copied with a report), the rest is used.
            shown = "; ".join(str(p) for p in found.problems[:5])
            context.log.warning(f"{len(found.problems)} label problem(s) quarantined: {shown}")
        if labels.is_empty():
            context.log.info(f"no labels arrived on {day} in {folder}")
        entry = lake_for(lifecycle, spec).store_daily(
            ground_truth.GROUND_TRUTH,
            context.partition_key,
            labels,
            files=[str(p) for p in sources],
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(entry["sha256"]),
            metadata={
                "rows": labels.height,
                "files_read": len(sources),
                "files": dg.MetadataValue.json([p.name for p in sources]),
                "files_in_folder": len(ground_truth.label_files(folder)),
                "label_problems": len(found.problems),
                "quarantined": dg.MetadataValue.json(
                    {
                        "problems": [str(p) for p in found.problems[:20]],
                        "reports": [str(r) for r in found.quarantined],
                    }
                ),
                "folder": dg.MetadataValue.path(str(folder)),
                "sha256": entry["sha256"],
                "path": dg.MetadataValue.path(entry["path"]),
            },
        )

    @dg.asset(
        key=names.key(spec.name, names.LIVE_PERFORMANCE),
        deps=[ground_truth_asset, names.key(spec.name, names.PREDICTION_LOG)],
        partitions_def=partitions,
        group_name=spec.name,
        kinds={"polars"},
        io_manager_key="json_io_manager",
        description=(
            f"Realized vs estimated performance of {spec.name} on that day's predictions, "
            "per model version."
        ),
    )
    @io_retry
    def live_performance_asset(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource
    ) -> dg.Output[dict]:
        lake = lake_for(lifecycle, spec)
        day = context.partition_key
        entry = lake.daily_entry(PREDICTION_LOGS, day)
        if entry is None:
            raise dg.Failure(
                f"no prediction log stored for {day}: materialize prediction_log",
                allow_retries=False,
            )
        log = Lake.read_verified(entry["path"], entry["sha256"])
        labels = labels_received(lake)
        joined = live_performance.join_labels(answered(log), labels)
        shadow = live_performance.join_shadow_labels(log, labels)
        label_days = len(lake.daily_days(ground_truth.GROUND_TRUTH))
        report = {"day": day, **live_performance.live_report(joined, spec.task, shadow)}
        metadata = _metadata(day, report, label_days, traits(spec).primary_metric)
        if report["premature_labels"]:
            context.log.warning(metadata["summary"])
        else:
            context.log.info(metadata["summary"])
        return dg.Output({**report, "summary": metadata["summary"]}, metadata=metadata)

    return [ground_truth_asset, live_performance_asset]
