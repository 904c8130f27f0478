"""Run the whole lifecycle of one model against a real Dagster instance, and summarize it.

This is what `make run` and `lifecycle run` do, and what a person does in the UI: ingest the
window's days that are new or whose inputs changed, then launch the training job. The days to
read are one Dagster run per block of consecutive days (a single-run backfill over the partition
range, each day still its own partition with its own metadata); the training job is one run
whose blocking checks decide whether the new version becomes `champion`.

The console gets one line per outcome; every Dagster event of a run goes to
`<LIFECYCLE_HOME>/reports/<model>/runs/<run id>.log`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.crash import crash_point
from lifecycle_assets.data.fingerprint import Fingerprint, fingerprint
from lifecycle_assets.data.ingest import day_state, undated_in_quarantine, window_keys
from lifecycle_assets.data.ingest_outcome import IngestOutcome
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.lake_reconcile import LakeAudit, audit_window
from lifecycle_assets.data.sources import days_with_rows
from lifecycle_assets.defs import names
from lifecycle_assets.defs.jobs import ingest_job_name, model_card_job_name, training_job_name
from lifecycle_assets.defs.partition_ranges import contiguous_blocks, range_tags
from lifecycle_assets.recovery import recover_at_start, recover_dagster, report
from lifecycle_assets.run_results import (
    already_registered_line,
    check_results,
    failure_cause,
    node_output,
    refusal_cause,
    write_run_log,
)
from lifecycle_assets.run_submission import ExecutionResult, execute
from lifecycle_assets.spec import ModelSpec

# Outcomes of a model's run, and the exit code of `lifecycle run` for each (README: exit codes).
PROMOTED, UNCHANGED, REFUSED, ERROR = "promoted", "unchanged", "refused", "error"
EXIT_CODES = {PROMOTED: 0, UNCHANGED: 0, REFUSED: 3, ERROR: 1}


# Dagster's console logger stays quiet: the run log file holds every event.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class LifecycleSummary:
    """What a person wants to read after a run: version, metrics, gates, champion, Bento."""

    model_name: str
    model_version: str | None
    metrics: dict[str, float]
    # Blocking checks (the gates) of the training run; `warnings` holds its WARN-only checks.
    gates: list[dict[str, Any]]
    champion_version: str | None
    promoted: bool
    bento_tag: str | None
    training_run_id: str
    ingest: IngestOutcome
    failure: str | None = None
    model_card: str | None = None
    # PROMOTED, UNCHANGED, REFUSED or ERROR; `EXIT_CODES` maps it to the exit code.
    outcome: str = ERROR
    run_logs: list[str] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    # When its summary was written (UTC): `run_summary` stamps it, `last_run.json` is the last.
    finished_at: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["ingest"] = dict(self.ingest.__dict__)
        data["exit_code"] = self.exit_code
        return data


def partitions_in_window(spec: ModelSpec, today: dt.date | None = None) -> list[str]:
    """The partition keys the training window needs: `data.ingest.window_keys`, anchored on
    `today` when given, else on the end date or the data's own last day."""
    return window_keys(spec, today)


def days_to_ingest(
    spec: ModelSpec,
    lake: Lake,
    days: list[str],
    *,
    refresh: bool = False,
    current: Fingerprint | None = None,
) -> dict[str, str]:
    """The days that need a run, each with why: never read, fingerprint changed, or refresh.

    A quarantined day whose inputs did not change is not read again: it would be quarantined
    again, and it stays counted as quarantined. `current` is the fingerprint taken once for the
    whole window (it hashes the source files), else taken here.
    """
    current = current or fingerprint(spec)
    needed = {}
    for day in days:
        state, changes = day_state(lake, day, current)
        if refresh:
            needed[day] = "--refresh"
        elif state in ("missing", "stale"):
            needed[day] = ", ".join(changes) if state == "stale" else "new"
    return needed


def record_outcome(
    spec: ModelSpec,
    lake: Lake,
    day: str,
    reason: str,
    outcome: IngestOutcome,
    current: Fingerprint | None = None,
) -> bool:
    """File one ingested day under its result, from what the lake now holds; False when the
    day ended in no known state (the run failed for another reason)."""
    state, _ = day_state(lake, day, current or fingerprint(spec))
    record = lake.batch(day)
    if state == "empty":
        outcome.empty.append(day)
    elif state == "quarantined" and record is not None:
        outcome.quarantined[day] = (record.report or {}).get("summary", "quarantined")
    elif state == "fresh":
        outcome.ingested.append(day)
        if reason not in ("new", "--refresh"):
            outcome.reingested[day] = reason
    else:
        return False
    return True


def _run_range(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    days: list[str],
    asset_selection: list[dg.AssetKey] | None = None,
) -> ExecutionResult:
    """One Dagster run over `days` (consecutive): each day its own partition, in one run."""
    return execute(
        job, instance, tags=range_tags(days), asset_selection=asset_selection, run_config=QUIET
    )


def ingest_window(
    defs: dg.Definitions,
    spec: ModelSpec,
    instance: dg.DagsterInstance,
    *,
    refresh: bool = False,
    progress: Callable[[str], None] | None = None,
    registry_reconciled_apart: bool = False,
) -> IngestOutcome:
    """Ingest the window's days that need reading, each block of consecutive days in ONE run.

    A quarantined day fails its blocking schema check, which holds back the features of the
    whole run; the features of the accepted days then get one more run of their own. What a
    killed run left behind is settled first (with `registry_reconciled_apart` only its Dagster
    part: the caller reconciles the registry before training, `training_setup`), then the lake
    is checked against its manifests and its damage settled (`reconcile_lake`).
    """
    if registry_reconciled_apart:
        report(recover_dagster(instance))
    else:
        recover_at_start(instance, [spec.name])
    settings = Settings.from_env()
    lake = Lake(settings.lake_dir, settings.quarantine_dir, spec.name)
    job = defs.resolve_job_def(ingest_job_name(spec))
    days = partitions_in_window(spec)
    # One fingerprint for the window: it hashes the source files, which do not change meanwhile.
    current = fingerprint(spec)
    audit = reconcile_lake(job, instance, spec, lake, days, current, refresh=refresh)
    needed = days_to_ingest(spec, lake, days, refresh=refresh, current=current)
    with_rows = days_with_rows(spec, list(needed)) if needed else set()
    outcome = IngestOutcome()
    to_read = []
    for day in days:
        if day not in needed:
            record = lake.batch(day)
            if record is None:
                outcome.empty.append(day)
            elif record.status != "accepted":
                outcome.quarantined[day] = (record.report or {}).get("summary", "quarantined")
            else:
                outcome.skipped.append(day)
        elif day not in with_rows:
            # A calendar gap: noted without a Dagster run, so nothing is launched to do nothing.
            lake.mark_empty(day, current.for_day(day).to_dict())
            outcome.empty.append(day)
        else:
            to_read.append(day)
    for block in contiguous_blocks(to_read):
        result = _run_range(job, instance, block)
        log = write_run_log(instance, result.run_id, spec, settings)
        # An accepted day whose features were not computed from its new batch: none yet, or
        # ones an earlier run left from the day's previous batch or inputs.
        held_back = [
            day
            for day in block
            if (record := lake.batch(day)) is not None
            and record.status == "accepted"
            and day_state(lake, day, current)[0] != "fresh"
        ]
        # A quarantined day failed its blocking check and held back the others' features.
        for rest in contiguous_blocks(held_back):
            features = [names.key(spec.name, names.FEATURES)]
            rerun = _run_range(job, instance, rest, features)
            write_run_log(instance, rerun.run_id, spec, settings)
        for day in block:
            if not record_outcome(spec, lake, day, needed[day], outcome, current):
                raise IngestError(f"ingest of {day} failed: {failure_cause(result)} (log: {log})")
        if progress:
            for day in block:
                progress(day)
    # Counted on every run, not only the one that found them: they stay lost until the
    # source is fixed (a changed source is read again, and its rows of no day looked for).
    outcome.undated_rows, outcome.undated = undated_in_quarantine(lake)
    outcome.lake, outcome.lake_damage = audit.to_dict(), audit.lines()
    outcome.refusal = audit.refusal()
    return outcome


def reconcile_lake(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    spec: ModelSpec,
    lake: Lake,
    days: list[str],
    current: Fingerprint,
    *,
    refresh: bool = False,
) -> LakeAudit:
    """Check the window's lake against its manifests and settle what is damaged
    (`data.lake_reconcile`), then rebuild the features it named from their verified raw batches:
    one features-only run per block of days, so Dagster records each rebuilt day."""
    audit = audit_window(spec, lake, days, current, refresh=refresh)
    settings = Settings.from_env()
    # Rebuilt before the days to read are chosen: a rebuilt day is then fresh, not read again.
    for block in contiguous_blocks(sorted(audit.rebuild)):
        result = _run_range(job, instance, block, [names.key(spec.name, names.FEATURES)])
        log = write_run_log(instance, result.run_id, spec, settings)
        failed = [day for day in block if day_state(lake, day, current)[0] != "fresh"]
        if failed:
            cause = failure_cause(result)
            raise IngestError(
                f"rebuilding the features of {failed[0]} failed: {cause} (log: {log})"
            )
    return audit


class IngestError(RuntimeError):
    """A day's ingest run failed for a reason other than its data (which is quarantined): the
    message names the day, the cause and the run's log."""


def _outcome(
    result: ExecutionResult,
    checks: list[dict[str, Any]],
    model: Any,
    champion: Any,
    training_set: Any,
    ingest: IngestOutcome,
) -> tuple[str, str | None]:
    blocking = [c for c in checks if not c["passed"] and c["severity"] == "ERROR"]
    if champion is not None:
        return PROMOTED, None
    if result.success and model is None and training_set is not None:
        if (held := already_registered_line(result)) is not None:
            return UNCHANGED, held
        digest = training_set["digest"][:12]
        return UNCHANGED, f"nothing changed: training set {digest} is the champion's"
    if blocking:
        reasons = "; ".join(f"{c['name']}: {c['description']}" for c in blocking)
        return REFUSED, f"blocked by {reasons}"
    if (verdict := refusal_cause(result)) is not None:
        return REFUSED, verdict
    cause = failure_cause(result)
    if ingest.quarantined and training_set is None:
        first = sorted(ingest.quarantined.items())[0]
        return (
            REFUSED,
            f"{len(ingest.quarantined)} day(s) quarantined, too few left to train "
            f"(first, {first[0]}: {first[1]})",
        )
    return ERROR, cause


def train_and_deploy(
    defs: dg.Definitions, spec: ModelSpec, instance: dg.DagsterInstance, ingest: IngestOutcome
) -> LifecycleSummary:
    if ingest.refusal:  # a raw batch the source cannot give back: not trained on, not promoted
        return LifecycleSummary(
            model_name=spec.name,
            model_version=None,
            metrics={},
            gates=[],
            champion_version=None,
            promoted=False,
            bento_tag=None,
            training_run_id="",
            ingest=ingest,
            failure=ingest.refusal,
            outcome=REFUSED,
        )
    settings = Settings.from_env()
    crash_point("before-training-run")  # between two runs: the window ingested, nothing trained
    result = execute(defs.resolve_job_def(training_job_name(spec)), instance, run_config=QUIET)
    logs = [str(write_run_log(instance, result.run_id, spec, settings))]
    training_set = node_output(result, spec, names.TRAINING_SET)
    model = node_output(result, spec, names.TRAINED_MODEL)
    report = node_output(result, spec, names.EVALUATION_REPORT)
    champion = node_output(result, spec, names.CHAMPION_MODEL)
    bento = node_output(result, spec, names.BENTO_SERVICE)
    checks = check_results(result)
    card = None
    if report is not None:
        # What the model card sensor does in a deployment, done here so that every evaluated
        # version (a rejected one too) has its card when the command returns.
        card_job = defs.resolve_job_def(model_card_job_name(spec))
        # It reads this run's evaluation, not the latest one: a concurrent run of the model
        # may have evaluated another version meanwhile.
        source = {names.SOURCE_RUN_TAG: result.run_id}
        card_result = execute(card_job, instance, run_config=QUIET, tags=source)
        logs.append(str(write_run_log(instance, card_result.run_id, spec, settings)))
        card_value = node_output(card_result, spec, names.MODEL_CARD)
        card = card_value["html_path"] if card_value else None
    outcome, failure = _outcome(result, checks, model, champion, training_set, ingest)
    if outcome == PROMOTED and not result.success:
        # Promoted, then the Bento failed: the champion moved but the run did not finish.
        outcome, failure = ERROR, failure_cause(result)
    return LifecycleSummary(
        model_name=spec.name,
        model_version=model["version"] if model else None,
        metrics=report["report"]["metrics"] if report else {},
        gates=[c for c in checks if c["severity"] != "WARN"],
        warnings=[c for c in checks if c["severity"] == "WARN"],
        champion_version=champion["champion"]["version"] if champion else None,
        promoted=champion is not None,
        bento_tag=bento["bento_tag"] if bento else None,
        training_run_id=result.run_id,
        ingest=ingest,
        failure=failure,
        model_card=card,
        outcome=outcome,
        run_logs=logs,
    )


def current_champion(settings: Settings, model: str) -> str | None:
    from lifecycle_assets.registry.refs import resolve
    from lifecycle_assets.registry.tracking import configure_mlflow

    champion = resolve(configure_mlflow(settings), model, config.CHAMPION_ALIAS)
    return champion.version if champion else None
