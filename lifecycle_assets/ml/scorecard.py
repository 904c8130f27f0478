"""The portfolio health scorecard: one row of facts per model, and the retirement policy.

`model_health` gathers a model's row from the readers in `scorecard_sources`, each of which reads
one fact from the one place that owns it. A fact that is not there stays None and shows as
unknown. `retirement_candidates` applies `RetirementPolicy` to the rows and says why in words.
`scorecard_html` renders the rows as one page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle_assets.config import RetirementPolicy, Settings
from lifecycle_assets.ml.scorecard_sources import (
    Champion,
    GateHistory,
    LiveWindow,
    Traffic,
    champion_facts,
    drift_status,
    gate_history,
    live_windows,
    metric_floor,
    offline_metric,
    registered_versions,
    traffic,
)
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.spec import ModelSpec, Task

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class ModelHealth:
    """Everything the scorecard knows about one model."""

    model: str
    task: Task
    metric: str
    metric_floor: float
    registered_at: dt.datetime | None
    last_retrain_at: dt.datetime | None
    champion: Champion | None
    offline_metric: float | None
    offline_delta: float | None  # champion minus previous champion, each on its own test set
    live: tuple[LiveWindow, ...]  # oldest first
    drift_day: str | None
    drifted: bool | None
    traffic: Traffic
    gates: GateHistory

    @property
    def live_metric(self) -> float | None:
        return self.live[-1].value if self.live else None

    def live_trend(self, windows: int) -> float | None:
        """Newest minus oldest of the last `windows` windows: the direction the metric moves."""
        recent = self.live[-windows:]
        return recent[-1].value - recent[0].value if len(recent) >= 2 else None


def _utc(millis: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC)


def model_health(
    spec: ModelSpec,
    settings: Settings,
    client: MlflowClient,
    live_dir: Path,
    policy: RetirementPolicy,
    today: dt.date,
) -> ModelHealth:
    """Gather one model's row; `live_dir` holds its daily live performance reports."""
    metric = traits(spec).primary_metric
    versions = registered_versions(client, spec.name)
    ledger = Ledger.for_settings(settings)
    champion = champion_facts(client, ledger, spec.name)
    offline = previous = None
    if champion is not None:
        offline = offline_metric(client, versions, champion.version, metric)
        if champion.previous_version is not None:
            previous = offline_metric(client, versions, champion.previous_version, metric)
    drift_day, drifted = drift_status(settings.reports_dir, spec.name)
    return ModelHealth(
        model=spec.name,
        task=spec.task,
        metric=metric,
        metric_floor=metric_floor(spec),
        registered_at=_utc(versions[0].creation_timestamp) if versions else None,
        last_retrain_at=_utc(versions[-1].creation_timestamp) if versions else None,
        champion=champion,
        offline_metric=offline,
        offline_delta=offline - previous if offline is not None and previous is not None else None,
        live=live_windows(live_dir, champion.version, metric, policy, today) if champion else (),
        drift_day=drift_day,
        drifted=drifted,
        traffic=traffic(settings, spec.name, policy, today),
        gates=gate_history(settings, ledger, versions, policy.gate_history_versions),
    )


def silent_days(row: ModelHealth, policy: RetirementPolicy, today: dt.date) -> tuple[int, str]:
    """Days without traffic and how sure that is: "exact", "at least" or "since registration".

    Counting starts at the first registration at the earliest: a model trained last week and
    not deployed yet has been silent for a week, not for the whole lookback.
    """
    lookback = today - dt.timedelta(days=policy.traffic_lookback_days)
    registered = row.registered_at.date() if row.registered_at else today
    last = row.traffic.last_request_at
    if last is not None and last.date() >= registered:
        return (today - last.date()).days, "exact"
    if registered >= lookback:
        return (today - registered).days, "since registration"
    return (today - lookback).days, "at least"


def retirement_reasons(row: ModelHealth, policy: RetirementPolicy, today: dt.date) -> list[str]:
    """Why the policy names this model for retirement; empty when it does not."""
    if row.registered_at is None:
        return []  # never trained: nothing to retire
    reasons = []
    days, certainty = silent_days(row, policy, today)
    if days > policy.max_days_without_traffic:
        how = {"exact": f"for {days} days", "at least": f"for at least {days} days"}
        span = how.get(certainty, f"in the {days} days since registration")
        reasons.append(f"no traffic {span} (policy: {policy.max_days_without_traffic})")
    n = policy.metric_floor_windows
    recent = row.live[-n:]
    if len(recent) == n and all(w.value < row.metric_floor for w in recent):
        reasons.append(
            f"live {row.metric} below floor {row.metric_floor:g} for {n} of the last {n} windows"
        )
    return reasons


def retirement_candidates(
    rows: list[ModelHealth], policy: RetirementPolicy, today: dt.date
) -> dict[str, list[str]]:
    """The models the policy flags, each with its reasons; models not flagged are left out."""
    flagged = {row.model: retirement_reasons(row, policy, today) for row in rows}
    return {model: reasons for model, reasons in flagged.items() if reasons}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def health_record(row: ModelHealth, policy: RetirementPolicy, today: dt.date) -> dict[str, Any]:
    """The row as flat JSON-safe scalars: a table record in the UI and a row of the asset value."""
    champion, reasons = row.champion, retirement_reasons(row, policy, today)
    since = champion.since if champion else None
    return {
        "model": row.model,
        "task": row.task,
        "champion": f"v{champion.version}" if champion else None,
        "champion_age_days": (today - since.date()).days if since else None,
        "promoted_by": champion.promoted_by if champion else None,
        "metric": row.metric,
        "metric_floor": row.metric_floor,
        "live_metric": row.live_metric,
        "live_trend": row.live_trend(policy.trend_windows),
        "live_windows": len(row.live),
        "offline_metric": row.offline_metric,
        "offline_delta": row.offline_delta,
        "previous_champion": champion.previous_version if champion else None,
        "drift": "no report" if row.drifted is None else "drifted" if row.drifted else "stable",
        "drift_day": row.drift_day,
        "requests": row.traffic.requests,
        "days_without_traffic": silent_days(row, policy, today)[0] if row.registered_at else None,
        "p99_latency_ms": row.traffic.p99_latency_ms,
        "gates": row.gates.summary(),
        "gates_failed": row.gates.failed,
        "gate_failures": "; ".join(row.gates.failures),
        "gates_tampered": len(row.gates.tampered),
        "tampered_versions": ", ".join(row.gates.tampered),
        "gates_read_unchecked": row.gates.unchecked,
        "rollbacks": champion.rollbacks if champion else 0,
        "last_retrain": _iso(row.last_retrain_at),
        "retirement_candidate": bool(reasons),
        "retirement_reasons": "; ".join(reasons),
    }
