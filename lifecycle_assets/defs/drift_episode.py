"""What the drift sensor does with a drift: retrain, wait out the cooldown, or wait for data.

A retrain only reacts to drift when the training window holds data the champion was not
trained on; otherwise its run succeeds and registers nothing ("nothing changed"), and a green
run would stand in the UI for a reaction that never happened. Such a drift stays pending in the
sensor's cursor, without spending the cooldown, and is retrained on once new feature partitions
make the window differ from the champion's training set (`champion_window`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg

from lifecycle_assets import config
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.defs import names
from lifecycle_assets.defs.champion_window import champions_window
from lifecycle_assets.defs.drift_reports import DriftReading
from lifecycle_assets.spec import ModelSpec

# A run tag is read in the UI's run list: the retrain's reason is cut to this length.
REASON_CHARS = 250
PENDING = "pending"


@dataclass(frozen=True)
class DriftEpisode:
    """A drift to retrain on: its days and features in words, and the run key of its retrain
    (the drifted report's, so a lost cursor never requests the same retrain twice)."""

    drift: str
    run_key: str
    # While waiting for data: the newest feature materialization when the window was judged,
    # and what the window lacks. The window is judged again only after a newer one.
    features_seen: int | None = None
    needed: str = ""

    @classmethod
    def of(cls, reading: DriftReading) -> DriftEpisode:
        trigger = reading.drifted[-1].record
        return cls(
            drift=reading.drift_text(limit=REASON_CHARS - 9),
            run_key=f"drift-retrain-{trigger.partition_key}-{trigger.storage_id}",
        )

    @classmethod
    def pending(cls, state: dict[str, Any]) -> DriftEpisode | None:
        """The drift the cursor keeps waiting for newer data, if any (an unreadable one,
        set by hand, counts as none)."""
        value = state.get(PENDING)
        try:
            return cls(**value) if isinstance(value, dict) else None
        except TypeError:
            return None


def _newest_features(instance: dg.DagsterInstance, spec: ModelSpec) -> int:
    records = instance.fetch_materializations(names.key(spec.name, names.FEATURES), limit=1)
    return records.records[0].storage_id if records.records else 0


def act_on_drift(
    context: dg.SensorEvaluationContext,
    spec: ModelSpec,
    state: dict[str, Any],
    episode: DriftEpisode,
    notes: str = "",
) -> dg.SensorResult:
    """Request the episode's retrain, or say why not and keep in `state` what comes next."""
    now = dt.datetime.now(dt.UTC)
    last = state.get("triggered_at")
    cooldown = dt.timedelta(hours=config.DRIFT_RETRAIN_COOLDOWN_HOURS)
    if last and now - dt.datetime.fromisoformat(last) < cooldown:
        # A retrain requested within the cooldown answers this drift too: not carried over.
        state.pop(PENDING, None)
        until = dt.datetime.fromisoformat(last) + cooldown
        return _skip(
            f"drift on {episode.drift}, but a drift retrain was already requested at {last}; "
            f"the cooldown lasts until {until}{notes}",
            state,
        )
    features = _newest_features(context.instance, spec)
    if episode.features_seen == features:
        why = "no feature partition materialized since the window was judged"
        return _skip(_waiting(episode, episode.needed, why) + notes, state)
    # The sensor's settings are the code location's, as `_window_requests` reads them.
    settings = config.Settings.from_env()
    lake = Lake(settings.lake_dir, settings.quarantine_dir, spec.name)
    from lifecycle_assets.registry.tracking import configure_mlflow

    window = champions_window(configure_mlflow(settings), spec, lake)
    if window is not None:
        needed = window.needed()
        state[PENDING] = asdict(
            DriftEpisode(episode.drift, episode.run_key, features_seen=features, needed=needed)
        )
        why = f"the training window holds only v{window.champion.version}'s training set"
        return _skip(_waiting(episode, needed, why) + notes, state)
    state.pop(PENDING, None)
    state["triggered_at"] = now.isoformat(timespec="seconds")
    request = dg.RunRequest(
        run_key=episode.run_key,
        tags={"lifecycle/trigger": "drift", "lifecycle/reason": f"drift on {episode.drift}"},
    )
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(state))


def _waiting(episode: DriftEpisode, needed: str, why: str) -> str:
    return (
        f"drift on {episode.drift}, but {why}: a retrain would register nothing; {needed}. "
        "The retrain waits for that data (no cooldown spent)"
    )


def _skip(reason: str, state: dict[str, Any]) -> dg.SensorResult:
    return dg.SensorResult(skip_reason=reason, cursor=json.dumps(state))
