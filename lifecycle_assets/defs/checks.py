"""The gates as blocking asset checks: data schemas, training data, AUC, regression, fairness.

Each check is thin: it loads what it judges and calls a pure function in `ml/`, so the same
verdict is reached by the promotion step, the model card and the tests.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg
import polars as pl

from lifecycle_assets.data.lake import Lake
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.data import lake_for
from lifecycle_assets.defs.resources import LifecycleResource
from lifecycle_assets.ml import gates
from lifecycle_assets.ml.evaluation import EvaluationReport
from lifecycle_assets.ml.features import compute_features
from lifecycle_assets.ml.leakage import (
    LEAKAGE_AUC,
    LEAKAGE_CHECK,
    single_feature_aucs,
    unknown_level_problems,
)
from lifecycle_assets.ml.schemas import (
    ValidationReport,
    feature_schema,
    raw_schema,
    validate,
    validate_raw,
)
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.serving.requests import RequestValidator
from lifecycle_assets.spec import ModelSpec

PARITY_SAMPLE_ROWS = 200


def parity_mismatches(raw: pl.DataFrame, pipeline_features: pl.DataFrame, spec: ModelSpec) -> list:
    """Columns whose values differ between the pipeline path and the service's request path.

    The service path starts from JSON-like records, as `/predict` receives them, and goes
    through the service's own validator before the shared feature code.
    """
    records = raw.select(spec.input_columns).to_dicts()
    batch = RequestValidator(spec, max_batch_size=max(len(records), 1)).validate(records)
    served = compute_features(batch.frame, spec)
    expected = pipeline_features.select(spec.feature_names)
    return [
        name
        for name in spec.feature_names
        if not served[name].equals(expected[name], check_dtypes=True, check_names=False)
    ]


def gate_result(gate: gates.GateResult) -> dg.AssetCheckResult:
    """A gate's verdict with its actual value and threshold visible in the UI."""
    return dg.AssetCheckResult(
        passed=gate.passed,
        description=gate.description,
        metadata={
            "actual": gate.actual if gate.actual is not None else "n/a",
            "threshold": gate.threshold,
        },
    )


def validation_result(report: ValidationReport, path: str) -> dg.AssetCheckResult:
    return stored_validation_result(report.to_dict(), path)


def stored_validation_result(report: dict[str, Any], path: str) -> dg.AssetCheckResult:
    """A verdict from a validation report as stored (`ValidationReport.to_dict()`)."""
    return dg.AssetCheckResult(
        passed=bool(report["passed"]),
        description=report["summary"],
        metadata={
            "rows": report["rows"],
            "failure_count": report["failure_count"],
            "failed_columns": dg.MetadataValue.json(report["failed_columns"]),
            "failed_rows": dg.MetadataValue.json(report["failed_rows"][:50]),
            "failures": dg.MetadataValue.json(report["failures"][:20]),
            "path": dg.MetadataValue.path(path),
        },
    )


def each_day_check(
    context: dg.AssetCheckExecutionContext, judge: Callable[[str], dg.AssetCheckResult]
) -> dg.AssetCheckResult:
    """Judge every day of the run (one day, or a window ingested in one run); one verdict.

    One day keeps its own result. A window passes when every day does; otherwise it names the
    failed days, with the first failure's description and metadata.
    """
    results = {day: judge(day) for day in context.partition_keys}
    if len(results) == 1:
        return next(iter(results.values()))
    failed = {day: result for day, result in results.items() if not result.passed}
    if not failed:
        return dg.AssetCheckResult(
            passed=True,
            description=f"all {len(results)} days pass",
            metadata={"days_checked": len(results)},
        )
    first_day, first = next(iter(failed.items()))
    return dg.AssetCheckResult(
        passed=False,
        description=f"{len(failed)} of {len(results)} days fail; {first_day}: {first.description}",
        metadata={
            **(first.metadata or {}),
            "days_checked": len(results),
            "failed_days": dg.MetadataValue.json(sorted(failed)),
        },
    )


def raw_day(spec: ModelSpec, lake: Lake, day: str, run_id: str) -> dg.AssetCheckResult:
    """The raw schema verdict of one day's stored batch, in the check run `run_id`."""
    record = lake.batch(day)
    if record is None:
        return dg.AssetCheckResult(passed=False, description="no batch stored for this day")
    batch = lake.read_batch(record)  # its SHA-256 verified: the bytes that were validated
    if record.run_id == run_id and record.report is not None:
        # Read and validated by this run's ingest step (same code, same spec): its report is
        # this check's verdict; validating the same bytes again would only cost time.
        return stored_validation_result(record.report, record.path)
    # An accepted batch is stored typed (target already 0/1): judge it by the schema alone.
    # A quarantined one is stored as it came: cast and validate it again.
    if record.status == "accepted":
        report = validate(batch, raw_schema(spec))
    else:
        _, report = validate_raw(batch, spec)
    return validation_result(report, record.path)


def build_data_checks(
    spec: ModelSpec, partitions: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """Schema checks on each day's raw batch and features; both block what comes after."""

    @dg.asset_check(
        asset=names.key(spec.name, names.RAW_BATCHES),
        name=names.RAW_SCHEMA_CHECK,
        blocking=True,
        partitions_def=partitions,
        description="The day's raw batch matches the pandera schema derived from the spec.",
    )
    def raw_batch_matches_schema(
        context: dg.AssetCheckExecutionContext, lifecycle: LifecycleResource
    ) -> dg.AssetCheckResult:
        lake, run_id = lake_for(lifecycle, spec), context.op_execution_context.run_id
        return each_day_check(context, lambda day: raw_day(spec, lake, day, run_id))

    @dg.asset_check(
        asset=names.key(spec.name, names.FEATURES),
        name=names.FEATURE_SCHEMA_CHECK,
        blocking=True,
        partitions_def=partitions,
        description="The day's features have exactly the model's columns, types and levels.",
    )
    def features_match_schema(
        context: dg.AssetCheckExecutionContext, lifecycle: LifecycleResource
    ) -> dg.AssetCheckResult:
        lake = lake_for(lifecycle, spec)
        return each_day_check(context, lambda day: features_day(lake, day))

    def features_day(lake: Lake, day: str) -> dg.AssetCheckResult:
        entry = lake.feature_entry(day)
        if entry is None:
            return dg.AssetCheckResult(passed=False, description="no features stored for this day")
        table = lake.read_verified(entry["path"], entry["sha256"])
        result = validation_result(validate(table, feature_schema(spec)), entry["path"])
        mostly_unknown = unknown_level_problems(table, spec)
        if not mostly_unknown:
            return result
        return dg.AssetCheckResult(
            passed=False,
            description="; ".join(mostly_unknown)
            + ("" if result.passed else f"; {result.description}"),
            metadata={**result.metadata, "unknown_levels": dg.MetadataValue.json(mostly_unknown)},
        )

    @dg.asset_check(
        asset=names.key(spec.name, names.FEATURES),
        name=names.PARITY_CHECK,
        blocking=True,
        partitions_def=partitions,
        description="The service's request path computes the same features as the pipeline.",
    )
    def train_serve_parity(
        context: dg.AssetCheckExecutionContext, lifecycle: LifecycleResource
    ) -> dg.AssetCheckResult:
        lake = lake_for(lifecycle, spec)
        return each_day_check(context, lambda day: parity_day(lake, day))

    def parity_day(lake: Lake, day: str) -> dg.AssetCheckResult:
        record, entry = lake.batch(day), lake.feature_entry(day)
        if record is None or entry is None:
            return dg.AssetCheckResult(passed=False, description="no batch or features stored")
        raw = lake.read_batch(record).head(PARITY_SAMPLE_ROWS)
        features = lake.read_verified(entry["path"], entry["sha256"]).head(PARITY_SAMPLE_ROWS)
        mismatches = parity_mismatches(raw, features, spec)
        return dg.AssetCheckResult(
            passed=not mismatches,
            description=(
                f"{raw.height} rows identical on both paths"
                if not mismatches
                else f"features differ between pipeline and service: {mismatches}"
            ),
            metadata={"rows_compared": raw.height, "mismatched_columns": mismatches},
        )

    return [raw_batch_matches_schema, features_match_schema, train_serve_parity]


def build_model_checks(spec: ModelSpec) -> list[dg.AssetChecksDefinition]:
    """The blocking gates between a trained model and the `champion` alias.

    Thresholds come from the spec (project defaults plus its `gates:` overrides); which metric
    each gate reads comes from the spec's task.
    """
    thresholds = spec.gate_thresholds()
    task = traits(spec)
    regression = spec.task == "regression"

    @dg.asset_check(
        asset=names.key(spec.name, names.TRAINING_SET),
        name=gates.QUARANTINE_GATE,
        blocking=True,
        description="Few enough of the window's days were quarantined (and left out).",
    )
    def quarantined_share_within_limit(training_set: dict[str, Any]) -> dg.AssetCheckResult:
        return gate_result(
            gates.quarantined_share_within_limit(training_set.get("quarantine"), thresholds)
        )

    @dg.asset_check(
        asset=names.key(spec.name, names.TRAINING_SET),
        name=LEAKAGE_CHECK,
        blocking=False,
        description=f"No single feature alone reaches AUC >= {LEAKAGE_AUC} (target leakage).",
    )
    def no_single_feature_leaks(training_set: dict[str, Any]) -> dg.AssetCheckResult:
        train = pl.read_parquet(training_set["path"]).filter(pl.col("split") == "train")
        scores = single_feature_aucs(train, spec)
        leaking = {name: auc for name, auc in scores.items() if auc >= LEAKAGE_AUC}
        return dg.AssetCheckResult(
            passed=not leaking,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"no feature alone reaches AUC {LEAKAGE_AUC}"
                if not leaking
                else "possible target leakage: "
                + ", ".join(f"{n} alone has AUC {a:.3f}" for n, a in leaking.items())
                + " (a column known only after the outcome?)"
            ),
            metadata={
                # actual/threshold like every gate, so the run summary shows the closest feature
                # (no actual when one class leaves no AUC to compute).
                **({"actual": max(scores.values())} if scores else {}),
                "threshold": LEAKAGE_AUC,
                "single_feature_auc": dg.MetadataValue.json(scores),
            },
        )

    @dg.asset_check(
        asset=names.key(spec.name, names.TRAINING_SET),
        name=gates.DATA_GATE,
        blocking=True,
        description=(
            "Enough rows in every split and a target that varies in each."
            if regression
            else "Enough rows in every split, both classes present, a plausible positive rate."
        ),
    )
    def training_data_is_sane(training_set: dict[str, Any]) -> dg.AssetCheckResult:
        return gate_result(
            gates.training_data_is_sane(training_set["split_stats"], thresholds, spec.task)
        )

    def report_gate(name: str, description: str, judge):
        @dg.asset_check(
            asset=names.key(spec.name, names.EVALUATION_REPORT),
            name=name,
            blocking=True,
            description=description,
        )
        def _check(evaluation_report: dict[str, Any]) -> dg.AssetCheckResult:
            report = EvaluationReport.from_dict(evaluation_report["report"])
            return gate_result(judge(report, thresholds))

        return _check

    metric = "R²" if regression else "ROC AUC"
    checks = [training_data_is_sane, quarantined_share_within_limit]
    if spec.is_classifier:
        checks.append(no_single_feature_leaks)
    return [
        *checks,
        report_gate(
            task.performance_gate,
            f"Test {metric} is at least the configured minimum.",
            gates.performance_meets_minimum,
        ),
        report_gate(
            gates.REGRESSION_GATE,
            f"Test {metric} is not worse than the champion's on the same rows beyond the "
            "tolerance.",
            gates.no_regression_vs_champion,
        ),
        report_gate(
            gates.FAIRNESS_GATE,
            "The slice MAE gap relative to the overall MAE is within the limit."
            if regression
            else "The true-positive-rate gap between sensitive-attribute slices is within the "
            "limit.",
            gates.fairness_gap_within_limit,
        ),
    ]
