"""Where the scorecard's facts come from: one small reader per source that owns a fact.

The registry gives the versions and their offline test metrics, the alias ledger the champion's
story (since, by whom, replacing which, rollbacks), the daily live performance reports the
realized metric, the newest drift report its verdict, the prediction log traffic and p99 latency,
and each version's evaluation report its gate verdicts, read through `registry.gate_record` (the
one door to them, which checks the file against its sealed verdict). A fact that is not there
stays None: a p99 of 0 ms or a metric of 0.0 would be a lie.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from lifecycle_assets import config
from lifecycle_assets.config import RetirementPolicy, Settings
from lifecycle_assets.data.prediction_log import PREDICTED_AT, answered, read_days
from lifecycle_assets.ml.drift import latest_drift_path
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.registry.gate_record import TamperedVerdict, gate_verdicts
from lifecycle_assets.registry.ledger import COMMITTED, Ledger
from lifecycle_assets.registry.refs import filter_literal, resolve
from lifecycle_assets.spec import ModelSpec

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# Server-side time to answer a row's request; optional in the log (older rows lack it).
LATENCY_MS = "latency_ms"


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
    """Verdicts of the newest registered versions: all gates passed, one failed, no report, or
    a report that does not match its sealed verdict (tampered: counted as neither pass nor
    fail, since its gates cannot be trusted). `unchecked` of the passed and failed were
    evaluated before verdicts were sealed, so their files were read unchecked."""

    passed: int
    failed: int
    not_evaluated: int
    failures: tuple[str, ...]  # "v4: auc_meets_minimum"
    tampered: tuple[str, ...] = ()  # "v3"
    unchecked: int = 0

    def summary(self) -> str:
        counts = [f"{self.passed} passed", f"{self.failed} failed"]
        counts += [f"{len(self.tampered)} tampered"] if self.tampered else []
        counts += [f"{self.not_evaluated} not evaluated"] if self.not_evaluated else []
        text = ", ".join(counts)
        return text + (f" ({self.unchecked} read unchecked)" if self.unchecked else "")


def registered_versions(client: MlflowClient, model: str) -> list[ModelVersion]:
    """Every registered version of the model, oldest first; empty when it was never trained."""
    versions = client.search_model_versions(f"name = {filter_literal(model)}")
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


def offline_metric(
    client: MlflowClient, versions: list[ModelVersion], version: str, metric: str
) -> float | None:
    """The `test_<metric>` the evaluation logged on the version's run; None if never evaluated.

    A version missing from `versions` was deleted: it has no metric left to compare with.
    """
    run_id = next((v.run_id for v in versions if str(v.version) == version), None)
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


def traffic(settings: Settings, model: str, policy: RetirementPolicy, today: dt.date) -> Traffic:
    """Answered requests and p99 latency of the recent window, and the last request's time
    within the lookback. One read of the logs; rows without a latency never count as 0 ms."""
    first = today - dt.timedelta(days=policy.traffic_lookback_days)
    rows = answered(read_days(settings, model, first, today))
    last = rows[PREDICTED_AT].max() if rows.height else None
    window_start = today - dt.timedelta(days=policy.traffic_window_days - 1)
    recent = rows.filter(pl.col(PREDICTED_AT).dt.date() >= window_start) if rows.height else rows
    latency = (
        recent[LATENCY_MS].cast(pl.Float64).drop_nulls()
        if LATENCY_MS in recent.columns
        else pl.Series(LATENCY_MS, [], pl.Float64)
    )
    return Traffic(
        requests=recent.height,
        last_request_at=last,
        p99_latency_ms=float(latency.quantile(0.99)) if latency.len() else None,
        latency_rows=latency.len(),
    )


def gate_history(
    settings: Settings, ledger: Ledger, versions: list[ModelVersion], count: int
) -> GateHistory:
    """Gate verdicts of the newest `count` versions, each version's evaluation report checked
    against the seal `ledger` recorded for it (`registry.gate_record`)."""
    passed = failed = missing = unchecked = 0
    failures, tampered = [], []
    for version in versions[-count:]:
        try:
            verdicts = gate_verdicts(settings, ledger, version.name, str(version.version))
        except TamperedVerdict:
            tampered.append(f"v{version.version}")
            continue
        if not verdicts.source:
            missing += 1
            continue
        failing = [g.get("name") for g in verdicts.gates if not g.get("passed")]
        passed, failed = passed + (not failing), failed + bool(failing)
        unchecked += bool(verdicts.unsealed)
        failures += [f"v{version.version}: {name}" for name in failing]
    return GateHistory(passed, failed, missing, tuple(failures), tuple(tampered), unchecked)


def metric_floor(spec: ModelSpec) -> float:
    """The spec's gate floor of its primary metric (`min_roc_auc`, `min_r2`)."""
    return float(getattr(spec.gate_thresholds(), f"min_{traits(spec).primary_metric}"))
