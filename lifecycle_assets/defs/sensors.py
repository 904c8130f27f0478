"""Event-based automation: ingest newly landed files; retrain when traffic drifts; write the
model card of every evaluated version."""

import json
import time
from typing import Any

import dagster as dg

from lifecycle_assets import config
from lifecycle_assets.data.fingerprint import fingerprint
from lifecycle_assets.data.ingest import select_window
from lifecycle_assets.data.lake import Lake, sha256_bytes
from lifecycle_assets.data.landing import landing_folder, read_cursor, scan_landing
from lifecycle_assets.defs import names
from lifecycle_assets.defs.card_retries import VERSION_TAG, CardCursor, retry_failed_cards
from lifecycle_assets.defs.drift_episode import DriftEpisode, act_on_drift
from lifecycle_assets.defs.drift_reports import read_drift_reports
from lifecycle_assets.defs.jobs import ingest_job_name, model_card_job_name, training_job_name
from lifecycle_assets.defs.partition_ranges import contiguous_blocks, range_tags
from lifecycle_assets.run_submission import submitted_by
from lifecycle_assets.spec import ModelSpec

# How long after `lifecycle run`'s training run the sensor leaves the card to the command (it
# submits the card run seconds later); past it, the command is taken to have died.
CLI_CARD_GRACE_SECONDS = 300
# A card run in one of these states will write the card: no second one is requested meanwhile.
PENDING_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# Drift reports one tick reads at most: a backfill of years of days is read over several
# ticks, the cursor carrying where each stopped, so none is skipped and no tick is slow.
DRIFT_REPORTS_PER_TICK = 500


def _json_cursor(context: dg.SensorEvaluationContext) -> dict[str, Any]:
    """The sensor's JSON cursor. One that does not parse (set by hand with `dagster sensor
    cursor --set`) counts as none, with a warning, instead of failing every tick until someone
    resets it: run keys keep the fresh start from requesting a run twice."""
    try:
        value = json.loads(context.cursor or "{}")
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        context.log.warning(f"unreadable cursor {context.cursor!r}: starting from none")
        return {}
    return value


def _metadata_value(record: dg.EventLogRecord, key: str) -> Any:
    metadata = record.asset_materialization.metadata
    return metadata[key].value if key in metadata else None


def _card_written_elsewhere(
    instance: dg.DagsterInstance,
    evaluation: dg.EventLogRecord,
    version: object,
    card_key: dg.AssetKey,
    spec: ModelSpec,
) -> tuple[str, bool] | None:
    """Why the sensor must not request this evaluation's card now, and whether the card
    already exists (the cursor may move past it); None if it must.

    `lifecycle run` writes the card itself right after its training run; on the team's
    instance that run ends while the daemon ticks this sensor, so a tick between the
    evaluation and the command's card run would write the same card twice.
    """
    cards = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=card_key, after_storage_id=evaluation.storage_id), limit=5
    ).records
    if any(str(_metadata_value(card, "model_version")) == str(version) for card in cards):
        return f"v{version} already has its card", True
    run = instance.get_run_by_id(evaluation.run_id) if evaluation.run_id else None
    if run is None:
        return None
    if not run.is_finished:
        status = run.status.value
        return f"v{version}'s evaluation run {run.run_id} is {status}: its card waits", False
    pending = instance.get_run_records(
        dg.RunsFilter(job_name=model_card_job_name(spec), statuses=PENDING_RUN_STATUSES),
        limit=1,
    )
    if pending:
        card_run = pending[0].dagster_run
        return f"card run {card_run.run_id} is {card_run.status.value}: it writes the card", False
    command = submitted_by(run)
    record = instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None else None
    if command and ended and time.time() - ended < CLI_CARD_GRACE_SECONDS:
        # Should the command die before its card run, the sensor requests it after the grace.
        return f"`lifecycle run` ({command}) evaluated v{version} and writes its card itself", False
    return None


def _window_requests(spec: ModelSpec, landed_days: set[str]) -> list[dg.RunRequest]:
    """The training window's other stored days that are stale, one run per block.

    A stored day carries the hash of the files feeding it (`data.day_sources`), so a new file
    leaves the other days fresh; a file replaced or deleted makes stale the days it fed, which
    the new file's own days may not cover (and a day stored before per-day fingerprints is
    read once more). Without these runs, the next training (a schedule, the drift sensor)
    found its window stale and refused to train. Keyed by the days' own hashes: the same files
    never re-read the same days twice.
    """
    settings = config.Settings.from_env()
    current = fingerprint(spec)
    lake = Lake(settings.lake_dir, settings.quarantine_dir, spec.name)
    selection = select_window(lake, spec, current)
    requests = []
    for block in contiguous_blocks([day for day in selection.stale if day not in landed_days]):
        tags = {"lifecycle/reason": "re-read: source file changed"}
        source = sha256_bytes("".join(current.for_day(d).source for d in block).encode())[:16]
        requests.append(
            dg.RunRequest(
                run_key=f"window {block[0]}..{block[-1]}:{source}",
                partition_key=block[0] if len(block) == 1 else None,
                tags=tags if len(block) == 1 else {**tags, **range_tags(block)},
            )
        )
    return requests


def build_sensors(spec: ModelSpec, jobs: list) -> list[dg.SensorDefinition]:
    ingest = {job.name: job for job in jobs}[ingest_job_name(spec)]
    drift_key = names.key(spec.name, names.DRIFT_REPORT)
    evaluation_key = names.key(spec.name, names.EVALUATION_REPORT)
    card_key = names.key(spec.name, names.MODEL_CARD)

    @dg.sensor(
        name=f"{spec.name}_new_data_sensor",
        job=ingest,
        minimum_interval_seconds=60,
        description=f"Ingests the days carried by each new or changed file in {spec.name}'s "
        "landing folder.",
    )
    def new_data_sensor(context: dg.SensorEvaluationContext):
        folder = landing_folder(spec)
        if folder is None:
            return dg.SkipReason(
                f"source {spec.source.uri} is not a local landing folder nor an object-storage "
                "prefix; ingestion follows the daily schedule"
            )
        landing = scan_landing(spec, folder, read_cursor(_json_cursor(context)))
        # The one count of downloads a tick costs: zero when no object's metadata changed.
        cost = f"hashed {landing.hashed} of {landing.listed}"
        context.log.info(f"landing {folder}: {cost}, {len(landing.fresh)} new or changed")
        if landing.touched:
            context.log.info(f"rewritten with the same bytes, not a new batch: {landing.touched}")
        if landing.removed:
            context.log.info(f"gone since the last tick, their days re-read: {landing.removed}")
        cursor = json.dumps(landing.cursor, sort_keys=True)
        if not landing.fresh and not landing.removed:
            return dg.SensorResult(
                skip_reason=f"no new or changed file among {landing.listed} in {folder} ({cost})",
                cursor=cursor,
            )
        valid = set(ingest.partitions_def.get_partition_keys())
        requests, outside = [], []
        for landed in landing.fresh:
            outside += [day for day in landed.days if day not in valid]
            # One run per run of consecutive days in the file, keyed by content: the same file
            # never triggers the same days twice, and a rewrite under the same name is a new
            # batch with runs of its own.
            for block in contiguous_blocks([day for day in landed.days if day in valid]):
                tags = {
                    "lifecycle/landed_file": landed.name,
                    "lifecycle/landed_sha256": landed.sha256,
                }
                requests.append(
                    dg.RunRequest(
                        run_key=f"{block[0]}..{block[-1]}:{landed.fingerprint}",
                        partition_key=block[0] if len(block) == 1 else None,
                        tags=tags if len(block) == 1 else {**tags, **range_tags(block)},
                    )
                )
        if outside:
            context.log.warning(f"days outside the partitions, not ingested: {sorted(outside)}")
        requests += _window_requests(spec, {d for landed in landing.fresh for d in landed.days})
        undated = sorted(landed.name for landed in landing.fresh if not landed.days)
        if undated:
            # No day to request a run for; said, not skipped in silence.
            message = (
                f"no readable event timestamp in {undated}: no day to ingest; the next ingest "
                f"run keeps their rows in quarantine ({spec.name}/undated) and blocks promotion"
            )
            context.log.warning(message)
            if not requests:
                return dg.SensorResult(skip_reason=message, cursor=cursor)
        if not requests:
            return dg.SensorResult(
                skip_reason=f"{landing.removed} gone from {folder}: no stored day of the "
                "training window was fed by them",
                cursor=cursor,
            )
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    @dg.sensor(
        name=f"{spec.name}_drift_sensor",
        job_name=training_job_name(spec),
        minimum_interval_seconds=60,
        description=f"Requests {spec.name}'s retraining when a drift report materialized since "
        f"the last tick drifted, at most once per {config.DRIFT_RETRAIN_COOLDOWN_HOURS} h; while "
        "the training window holds only the champion's training set, the drift waits for newer "
        "data.",
    )
    def drift_sensor(context: dg.SensorEvaluationContext):
        state = _json_cursor(context)
        newest = context.instance.fetch_materializations(drift_key, limit=1).records
        if not newest:
            # Storage id 0: every report from now on is after the cursor, the first included.
            state["storage_id"] = 0
            return dg.SensorResult(
                skip_reason="no drift report has been materialized yet", cursor=json.dumps(state)
            )
        after = state.get("storage_id")
        if not isinstance(after, int):
            # No cursor (first start, or reset): older reports predate the sensor, and a
            # months-old drift must not retrain today; the newest is judged, and all after it.
            after = newest[0].storage_id - 1
        pending = DriftEpisode.pending(state)
        if newest[0].storage_id <= after:
            if pending is not None:
                return act_on_drift(context, spec, state, pending)
            return dg.SkipReason(f"no new drift report since the one of {newest[0].partition_key}")
        reading = read_drift_reports(context.instance, drift_key, after, DRIFT_REPORTS_PER_TICK)
        state["storage_id"] = reading.last_storage_id
        if reading.drifted:
            episode = DriftEpisode.of(reading)
        elif pending is not None:
            # A clean day does not undo the drift still waiting for newer data.
            episode = pending
        else:
            return dg.SensorResult(skip_reason=reading.no_drift(), cursor=json.dumps(state))
        return act_on_drift(context, spec, state, episode, reading.notes())

    @dg.sensor(
        name=f"{spec.name}_model_card_sensor",
        job_name=model_card_job_name(spec),
        minimum_interval_seconds=30,
        # Cheap and never changes what serves: on by default, so no version goes without a card.
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Writes the model card of each newly evaluated {spec.name} version, "
        "including versions the gates rejected.",
    )
    def model_card_sensor(context: dg.SensorEvaluationContext):
        # The cursor: the storage id of the last evaluation handled, and the versions whose
        # card run failed or is awaited (retried with backoff: `card_retries`).
        state = CardCursor.read(context)
        retries, notes = retry_failed_cards(context, spec, card_key, state)
        requests, reason, after = _next_card(context, state.after)
        for request in requests:
            state.watch(request)
        requests = [*retries, *requests]
        for note in notes if requests else []:  # a tick that requests has no skip reason
            context.log.info(note)
        return dg.SensorResult(
            run_requests=requests,
            skip_reason=None if requests else "; ".join([*notes, reason or ""]).strip("; "),
            cursor=state.to_json(after),
        )

    def _next_card(
        context: dg.SensorEvaluationContext, after: int | None
    ) -> tuple[list[dg.RunRequest], str | None, int | None]:
        """The card run of the oldest evaluation not yet handled, or why none now; and the
        storage id the cursor moves to."""
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=evaluation_key, after_storage_id=after),
            limit=1,
            # The oldest evaluation not yet handled, so two evaluated between ticks each get
            # their card; a sensor without a cursor starts at the newest (older ones predate it).
            ascending=after is not None,
        ).records
        if not records:
            if after:
                return [], "no new evaluation since the last card", after
            # Cursor 0, not none: the sensor is on by default, so this is its first tick on a
            # new instance, and every version evaluated before the next one needs its card.
            return [], "nothing evaluated yet", 0
        latest = records[0]
        version = _metadata_value(latest, "model_version")
        wait = _card_written_elsewhere(context.instance, latest, version, card_key, spec)
        if wait is not None:
            # Handled (a card exists) or not yet (someone else is about to write it): the
            # cursor moves past it only once the card exists. While it waits, the cursor
            # stops just before it, even on a first tick: without a cursor the next tick
            # would start at a newer evaluation and this version would never get its card.
            reason, card_exists = wait
            return [], reason, latest.storage_id if card_exists else latest.storage_id - 1
        request = dg.RunRequest(
            # One card run per version, even if the cursor is lost: Dagster dedups the key.
            run_key=f"model-card-v{version}",
            # The card run reads this evaluation's run, not the latest evaluation.
            tags={VERSION_TAG: str(version), names.SOURCE_RUN_TAG: latest.run_id},
        )
        return [request], None, latest.storage_id

    return [new_data_sensor, drift_sensor, model_card_sensor]
