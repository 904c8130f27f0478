"""The portfolio health scorecard: one row of facts per model, and the retirement policy.

Each fact is read by a small function from the one place that owns it: the registry (champion,
versions, offline test metrics), the alias ledger (when and by whom the champion was promoted,
the previous champion, rollbacks), the daily live performance reports, the newest drift verdict,
the prediction log (traffic, p99 latency) and each version's evaluation report (gate history). A
fact that is not there stays None and shows as unknown: a p99 of 0 ms or a metric of 0.0 would
be a lie. `retirement_candidates` applies `RetirementPolicy` to the rows and says why in words.
`scorecard_html` renders the rows as one page.
"""

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from lifecycle_assets import config
from lifecycle_assets.config import RetirementPolicy, Settings
from lifecycle_assets.data.prediction_log import PREDICTED_AT, answered, read_day
from lifecycle_assets.ml.drift import latest_drift_path
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.registry.ledger import COMMITTED, Ledger
from lifecycle_assets.registry.models import resolve
from lifecycle_assets.spec import ModelSpec, Task

# Server-side time to answer a row's request; optional in the log (older rows lack it).
LATENCY_MS = "latency_ms"
EVALUATION_FILE = "evaluation.json"
# Where the evaluation asset logs its report folder in the version's MLflow run.
EVALUATION_ARTIFACT = f"evaluation/{EVALUATION_FILE}"


@dataclass(frozen=True)
class Champion:
    """The version holding `champion`, since when and by whom (from the ledger)."""

    version: str
    since: dt.datetime | None  # None when the ledger has no entry for the current holder
    promoted_by: str | None
    previous_version: str | None
    rollbacks: int


@dataclass(frozen=True)
class Traffic:
    """Answered requests in the recent window and when the last one came."""

    requests: int
    last_request_at: dt.datetime | None
    p99_latency_ms: float | None
    latency_rows: int


@dataclass(frozen=True)
class LiveWindow:
    """One day's realized primary metric of the champion, on that day's labelled predictions."""

    day: dt.date
    value: float
    labelled_rows: int


@dataclass(frozen=True)
class GateHistory:
    """Verdicts of the newest registered versions: all gates passed, one failed, or no report."""

    passed: int
    failed: int
    not_evaluated: int
    failures: tuple[str, ...]  # "v4: auc_meets_minimum"

    def summary(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed"
        return text + (f", {self.not_evaluated} not evaluated" if self.not_evaluated else "")


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


def registered_versions(client: MlflowClient, model: str) -> list[ModelVersion]:
    """Every registered version of the model, oldest first; empty when it was never trained."""
    versions = client.search_model_versions(f"name = '{model}'")
    return sorted(versions, key=lambda v: int(v.version))


def champion_facts(client: MlflowClient, ledger: Ledger, model: str) -> Champion | None:
    """The registry's champion with the ledger's story of it: since, by whom, replacing which."""
    ref = resolve(client, model, config.CHAMPION_ALIAS)
    if ref is None:
        return None
    entries = ledger.entries(model, config.CHAMPION_ALIAS, COMMITTED)
    entry = entries[-1] if entries and entries[-1].to_version == ref.version else None
    return Champion(
        version=ref.version,
        since=dt.datetime.fromisoformat(entry.time) if entry else None,
        promoted_by=entry.actor if entry else None,
        previous_version=entry.from_version if entry else None,
        rollbacks=sum(e.kind == "rollback" for e in entries),
    )


def offline_metric(client: MlflowClient, model: str, version: str, metric: str) -> float | None:
    """The `test_<metric>` the evaluation logged on the version's run; None if never evaluated."""
    try:
        run_id = client.get_model_version(model, version).run_id
    except MlflowException as error:
        # A deleted version has no metric left to compare with: unknown, not an error.
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return client.get_run(run_id).data.metrics.get(f"test_{metric}") if run_id else None


def live_windows(
    live_dir: Path, version: str, metric: str, policy: RetirementPolicy, today: dt.date
) -> tuple[LiveWindow, ...]:
    """The champion's realized metric per day, from the live performance reports (`<day>.json`).

    Only the champion's own rows count: a canary's or the previous champion's days say nothing
    about the version that serves now, and retraining a weak model resets its record.
    """
    start = today - dt.timedelta(days=policy.live_lookback_days)
    windows = []
    for path in sorted(Path(live_dir).glob("*.json")):
        day = dt.date.fromisoformat(path.stem)
        if not start <= day <= today:
            continue
        report = json.loads(path.read_text())
        entry = next((e for e in report["versions"] if e["model_version"] == version), None)
        value = ((entry or {}).get("realized") or {}).get(metric)
        if entry and value is not None and entry["labelled_rows"] >= policy.min_window_labels:
            windows.append(LiveWindow(day, float(value), int(entry["labelled_rows"])))
    return tuple(windows)


def drift_status(reports_dir: Path, model: str) -> tuple[str | None, bool | None]:
    """(day, drifted) of the newest drift report; (None, None) when drift was never measured."""
    path = latest_drift_path(reports_dir, model)
    if not path.exists():
        return None, None
    latest = json.loads(path.read_text())
    return latest["day"], bool(latest["drifted"])


def traffic(log_dir: Path, model: str, policy: RetirementPolicy, today: dt.date) -> Traffic:
    """Answered requests and p99 latency of the recent window, and the last request's time.

    Walks back one day at a time and stops once both the window is read and a request was
    found, so a busy model costs `traffic_window_days` reads; a silent one is searched back to
    `traffic_lookback_days`. Rows without a latency never count as 0 ms.
    """
    requests, last, latencies = 0, None, []
    for back in range(policy.traffic_lookback_days + 1):
        if last is not None and back >= policy.traffic_window_days:
            break
        rows = answered(read_day(log_dir, model, today - dt.timedelta(days=back)))
        if last is None and rows.height:
            last = rows[PREDICTED_AT].max()
        if back < policy.traffic_window_days:
            requests += rows.height
            if LATENCY_MS in rows.columns:
                latencies.append(rows[LATENCY_MS].cast(pl.Float64).drop_nulls())
    latency = pl.concat(latencies) if latencies else pl.Series(LATENCY_MS, [], pl.Float64)
    return Traffic(
        requests=requests,
        last_request_at=last,
        p99_latency_ms=float(latency.quantile(0.99)) if latency.len() else None,
        latency_rows=latency.len(),
    )


def _evaluation(client: MlflowClient, reports_dir: Path, version: ModelVersion) -> dict | None:
    local = Path(reports_dir) / version.name / f"v{version.version}" / EVALUATION_FILE
    if local.exists():
        return json.loads(local.read_text())
    if not version.run_id:
        return None
    # Evaluated on another machine: the report folder was also logged to the version's run.
    logged = {f.path for f in client.list_artifacts(version.run_id, "evaluation")}
    if EVALUATION_ARTIFACT not in logged:
        return None
    return mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{EVALUATION_ARTIFACT}")


def gate_history(
    client: MlflowClient, reports_dir: Path, versions: list[ModelVersion], count: int
) -> GateHistory:
    """Gate verdicts of the newest `count` versions, from each version's evaluation report."""
    passed = failed = missing = 0
    failures = []
    for version in versions[-count:]:
        report = _evaluation(client, reports_dir, version)
        if report is None:
            missing += 1
            continue
        failing = [g["name"] for g in report["gates"] if not g["passed"]]
        passed, failed = passed + (not failing), failed + bool(failing)
        failures += [f"v{version.version}: {name}" for name in failing]
    return GateHistory(passed, failed, missing, tuple(failures))


def metric_floor(spec: ModelSpec) -> float:
    """The spec's gate floor of its primary metric (`min_roc_auc`, `min_r2`)."""
    return float(getattr(spec.gate_thresholds(), f"min_{traits(spec).primary_metric}"))


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
    champion = champion_facts(client, Ledger.for_settings(settings), spec.name)
    offline = previous = None
    if champion is not None:
        offline = offline_metric(client, spec.name, champion.version, metric)
        if champion.previous_version is not None:
            previous = offline_metric(client, spec.name, champion.previous_version, metric)
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
        traffic=traffic(settings.prediction_log_dir, spec.name, policy, today),
        gates=gate_history(client, settings.reports_dir, versions, policy.gate_history_versions),
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
        "rollbacks": champion.rollbacks if champion else 0,
        "last_retrain": _iso(row.last_retrain_at),
        "retirement_candidate": bool(reasons),
        "retirement_reasons": "; ".join(reasons),
    }
