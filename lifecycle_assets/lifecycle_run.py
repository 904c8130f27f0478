"""Run the whole lifecycle of one model against a real Dagster instance, and summarize it.

This is what `make run` and `lifecycle run` do, and what a person does in the UI: backfill the
ingest job over the window, then launch the training job. The window is one Dagster run per
model (a single-run backfill over the partition range, each day still its own partition with its
own metadata); the training job is one run whose blocking checks decide whether the new version
becomes `champion`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from lifecycle_assets.config import Settings
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.defs import names
from lifecycle_assets.defs.factory import daily_partitions
from lifecycle_assets.defs.jobs import ingest_job_name, model_card_job_name, training_job_name
from lifecycle_assets.defs.partition_ranges import contiguous_blocks, range_tags
from lifecycle_assets.spec import ModelSpec


# The console shows what a person acts on; every event stays in the Dagster UI.
def _console_logging(level: str) -> dict[str, Any]:
    return {"loggers": {"console": {"config": {"log_level": level}}}}


@dataclass
class IngestOutcome:
    """Days ingested, skipped because already materialized, and quarantined."""

    ingested: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)


@dataclass
class LifecycleSummary:
    """What a person wants to read after a run: version, metrics, gates, champion, Bento."""

    model_name: str
    model_version: str | None
    metrics: dict[str, float]
    gates: list[dict[str, Any]]
    champion_version: str | None
    promoted: bool
    bento_tag: str | None
    training_run_id: str
    ingest: IngestOutcome
    failure: str | None = None
    model_card: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["ingest"] = dict(self.ingest.__dict__)
        return data


def partitions_in_window(spec: ModelSpec, today: dt.date | None = None) -> list[str]:
    """The partition keys the training window needs (the newest `window_days`)."""
    partitions = daily_partitions(spec)
    keys = partitions.get_partition_keys(
        current_time=dt.datetime.combine(today or dt.date.today(), dt.time(), tzinfo=dt.UTC)
    )
    return keys[-spec.training.window_days :]


def _run_range(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    days: list[str],
    asset_selection: list[dg.AssetKey] | None = None,
) -> dg.ExecuteInProcessResult:
    """One Dagster run over `days` (consecutive): each day its own partition, in one run."""
    return job.execute_in_process(
        instance=instance,
        tags=range_tags(days),
        asset_selection=asset_selection,
        raise_on_error=False,
        run_config=_console_logging("WARNING"),
    )


def ingest_window(
    defs: dg.Definitions,
    spec: ModelSpec,
    instance: dg.DagsterInstance,
    *,
    refresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> IngestOutcome:
    """Ingest the window's missing days in ONE Dagster run (per run of consecutive days).

    A quarantined day fails its blocking schema check, which holds back the features of the
    whole run; the features of the accepted days then get one more run of their own.
    """
    job = defs.resolve_job_def(ingest_job_name(spec))
    done = instance.get_materialized_partitions(names.key(spec.name, names.FEATURES))
    window = partitions_in_window(spec)
    outcome = IngestOutcome(skipped=[d for d in window if d in done and not refresh])
    needed = [d for d in window if d not in outcome.skipped]
    settings = Settings.from_env()
    lake = Lake(settings.lake_dir, settings.quarantine_dir, spec.name)
    for block in contiguous_blocks(needed):
        result = _run_range(job, instance, block)
        stored = {day: lake.batch(day) for day in block}
        quarantined = {
            day: (record.report or {}).get("summary", "quarantined")
            for day, record in stored.items()
            if record is not None and record.status != "accepted"
        }
        outcome.quarantined.update(quarantined)
        accepted = [d for d in block if d not in quarantined]
        missing = [d for d in accepted if lake.feature_entry(d) is None]
        for rest in contiguous_blocks(missing) if quarantined else []:
            _run_range(job, instance, rest, [names.key(spec.name, names.FEATURES)])
        failed = [d for d in accepted if lake.feature_entry(d) is None]
        if failed:
            raise RuntimeError(
                f"ingest of {failed[0]} failed: {result.get_run_failure_event() or 'no features'}"
            )
        outcome.ingested.extend(accepted)
        if progress:
            for day in block:
                progress(day)
    return outcome


def _output(result: dg.ExecuteInProcessResult, spec: ModelSpec, asset: str) -> Any:
    node = f"{spec.name}__{asset}"
    return result.output_for_node(node) if result.is_node_success(node) else None


def train_and_deploy(
    defs: dg.Definitions, spec: ModelSpec, instance: dg.DagsterInstance, ingest: IngestOutcome
) -> LifecycleSummary:
    result = defs.resolve_job_def(training_job_name(spec)).execute_in_process(
        instance=instance, raise_on_error=False, run_config=_console_logging("INFO")
    )
    model = _output(result, spec, names.TRAINED_MODEL)
    report = _output(result, spec, names.EVALUATION_REPORT)
    champion = _output(result, spec, names.CHAMPION_MODEL)
    bento = _output(result, spec, names.BENTO_SERVICE)
    checks = [
        {
            "name": e.check_name,
            "passed": e.passed,
            "description": e.description,
            "actual": e.metadata.get("actual").value if "actual" in e.metadata else None,
            "threshold": e.metadata.get("threshold").value if "threshold" in e.metadata else None,
        }
        for e in result.get_asset_check_evaluations()
    ]
    card = None
    if report is not None:
        # What the model card sensor does in a deployment, done here so that every evaluated
        # version (a rejected one too) has its card when the command returns.
        card_result = defs.resolve_job_def(model_card_job_name(spec)).execute_in_process(
            instance=instance, run_config=_console_logging("WARNING")
        )
        card = _output(card_result, spec, names.MODEL_CARD)["html_path"]
    failure = None
    if not result.success:
        failures = result.get_step_failure_events()
        failure = failures[0].event_specific_data.error.message.strip() if failures else None
        failed_gates = [c["name"] for c in checks if not c["passed"]]
        if failed_gates:
            failure = f"blocked by {', '.join(failed_gates)}"
    return LifecycleSummary(
        model_name=spec.name,
        model_version=model["version"] if model else None,
        metrics=report["report"]["metrics"] if report else {},
        gates=checks,
        champion_version=champion["champion"]["version"] if champion else None,
        promoted=champion is not None,
        bento_tag=bento["bento_tag"] if bento else None,
        training_run_id=result.run_id,
        ingest=ingest,
        failure=failure,
        model_card=card,
    )


def write_summary(summary: LifecycleSummary, settings: Settings) -> Path:
    path = settings.reports_dir / summary.model_name / "last_run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    return path
