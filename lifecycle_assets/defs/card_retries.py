"""The model card sensor's memory of the card runs it requested, so that a failed one is retried.

A card run that fails (its evaluation's value unreadable for a moment, MLflow down) used to
leave its version without a card for ever: the sensor's cursor had moved past the evaluation and
the run key `model-card-v<N>` was spent. The cursor now keeps each requested version until its
card exists: a failed run is requested again after a backoff that doubles, at most
`CARD_RETRIES` times, and a version that keeps failing is reported (the tick's skip reason and
an error in the sensor's log, naming the version and its last error), then left alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lifecycle_assets.defs.jobs import model_card_job_name
from lifecycle_assets.run_results import root_message
from lifecycle_assets.spec import ModelSpec

CARD_RETRIES = 3
# The first retry's delay; each next one waits twice as long (60 s, 120 s, 240 s).
CARD_RETRY_BACKOFF_SECONDS = 60.0
# Versions watched at once, oldest dropped first: the cursor stays small whatever happens.
MAX_WATCHED = 50
VERSION_TAG = "lifecycle/model_version"
FAILED_STATUSES = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@dataclass
class CardCursor:
    """The last evaluation handled (its storage id), and the versions whose card run is awaited:
    version -> {"tags", "attempts", and once a run failed "failed", "error", "failed_at"}."""

    after: int | None = None
    watched: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, context: dg.SensorEvaluationContext) -> CardCursor:
        """The cursor's JSON form, or the bare storage id written before retries existed; one
        that is neither (set by hand) counts as none, with a warning."""
        text = context.cursor or ""
        if text.isdigit():
            return cls(after=int(text))
        try:
            value = json.loads(text) if text else {}
        except json.JSONDecodeError:
            value = None
        after = value.get("after") if isinstance(value, dict) else None
        watched = value.get("watched", {}) if isinstance(value, dict) else None
        if not isinstance(watched, dict) or not isinstance(after, int | None):
            context.log.warning(f"unreadable cursor {context.cursor!r}: starting from none")
            return cls()
        return cls(after=after, watched=watched)

    def to_json(self, after: int | None) -> str:
        kept = dict(sorted(self.watched.items(), key=_by_version)[-MAX_WATCHED:])
        return json.dumps({"after": after, "watched": kept}, sort_keys=True)

    def watch(self, request: dg.RunRequest) -> None:
        self.watched[str(request.tags[VERSION_TAG])] = {"tags": dict(request.tags), "attempts": 1}


def _by_version(item: tuple[str, Any]) -> tuple[int, str]:
    """Registry versions in numeric order, without failing on one that is not a number."""
    return len(item[0]), item[0]


def _carded_versions(instance: dg.DagsterInstance, card_key: dg.AssetKey) -> set[str]:
    """The versions of the 20 newest model cards: read once per tick, for every watched one."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=card_key), limit=20, ascending=False
    ).records
    metadata = (r.asset_materialization.metadata for r in records)
    return {str(m["model_version"].value) for m in metadata if "model_version" in m}


def _run_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The failed card run's cause on one line: its first step failure, else the run's own."""
    for kind in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
        for entry in instance.all_logs(run_id, of_type=kind):
            event = entry.dagster_event
            error = getattr(event.event_specific_data, "error", None) if event else None
            if error is not None:
                return root_message(error)
            if event is not None and event.message:
                return event.message.splitlines()[0]
    return "the run ended without a recorded error"


def retry_failed_cards(
    context: dg.SensorEvaluationContext, spec: ModelSpec, card_key: dg.AssetKey, state: CardCursor
) -> tuple[list[dg.RunRequest], list[str]]:
    """Requests for the watched versions whose card run failed and whose backoff is over, and
    one line per version still waiting (or given up); updates `state.watched` in place."""
    instance, now = context.instance, time.time()
    requests, notes = [], []
    carded = _carded_versions(instance, card_key) if state.watched else set()
    for version, entry in sorted(state.watched.items(), key=_by_version):
        if version in carded:
            del state.watched[version]
            continue
        runs = instance.get_run_records(
            dg.RunsFilter(job_name=model_card_job_name(spec), tags={VERSION_TAG: version}), limit=1
        )
        run = runs[0].dagster_run if runs else None
        if run is None or run.status not in FAILED_STATUSES or run.run_id == entry.get("retried"):
            # Not launched yet, still running, or done (its card is then found next tick).
            if run is not None and run.status == dg.DagsterRunStatus.SUCCESS:
                del state.watched[version]
            continue
        attempts = int(entry["attempts"])
        if entry.get("failed") != run.run_id:
            entry.update(failed=run.run_id, error=_run_error(instance, run.run_id), failed_at=now)
        next_at = entry["failed_at"] + CARD_RETRY_BACKOFF_SECONDS * 2 ** (attempts - 1)
        if attempts > CARD_RETRIES:
            line = (
                f"v{version}'s model card failed {attempts} times, last in run {run.run_id}: "
                f"{entry['error']}; not retried again (materialize {card_key.to_user_string()} "
                f"with tag {VERSION_TAG}={version} once the cause is fixed)"
            )
            context.log.error(line)
            notes.append(line)
            del state.watched[version]
        elif now < next_at:
            notes.append(
                f"v{version}'s card run {run.run_id} failed (attempt {attempts} of "
                f"{CARD_RETRIES + 1}): {entry['error']}; retried in "
                f"{next_at - now:.0f} s"
            )
        else:
            context.log.warning(
                f"retrying v{version}'s model card (attempt {attempts + 1} of "
                f"{CARD_RETRIES + 1}); the last run {run.run_id} failed: {entry['error']}"
            )
            requests.append(
                dg.RunRequest(run_key=f"model-card-v{version}-retry-{attempts}", tags=entry["tags"])
            )
            entry.update(attempts=attempts + 1, retried=run.run_id)
    return requests, notes
