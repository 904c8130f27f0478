"""Run the whole lifecycle of one model against a real Dagster instance, and summarize it.

This is what `make run` and `lifecycle run` do, and what a person does in the UI: backfill the
ingest job over the window, then launch the training job. Each partition is its own Dagster run
(visible in the UI with its data version); the training job is one run whose blocking checks
decide whether the new version becomes `champion`.
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
from lifecycle_assets.defs import names
from lifecycle_assets.defs.factory import daily_partitions
from lifecycle_assets.defs.jobs import ingest_job_name, model_card_job_name, training_job_name
from lifecycle_assets.recovery import recover_at_start
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


def ingest_window(
    defs: dg.Definitions,
    spec: ModelSpec,
    instance: dg.DagsterInstance,
    *,
    refresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> IngestOutcome:
    recover_at_start(instance, [spec.name])  # settle what a killed run left behind, first
    job = defs.resolve_job_def(ingest_job_name(spec))
    done = instance.get_materialized_partitions(names.key(spec.name, names.FEATURES))
    outcome = IngestOutcome()
    for day in partitions_in_window(spec):
        if day in done and not refresh:
            outcome.skipped.append(day)
        else:
            result = job.execute_in_process(
                partition_key=day,
                instance=instance,
                raise_on_error=False,
                run_config=_console_logging("WARNING"),
            )
            failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
            if failed:
                outcome.quarantined[day] = failed[0].description or "failed a blocking check"
            elif not result.success:
                raise RuntimeError(f"ingest of {day} failed: {result.get_run_failure_event()}")
            else:
                outcome.ingested.append(day)
        if progress:
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
