"""The portfolio health scorecard as one self-contained HTML page, with live-metric sparklines."""

import datetime as dt
import html
from typing import Any

from lifecycle_assets.config import RetirementPolicy
from lifecycle_assets.ml.scorecard import ModelHealth, health_record, silent_days


def sparkline_svg(values: list[float], floor: float, width: int = 120, height: int = 28) -> str:
    """An inline SVG line of the values with the floor dashed in red; empty under two points."""
    if len(values) < 2:
        return ""
    low, high = min(*values, floor), max(*values, floor)
    span = (high - low) or 1.0

    def y(value: float) -> float:
        return round(height - 2 - (value - low) / span * (height - 4), 1)

    step = (width - 4) / (len(values) - 1)
    points = " ".join(f"{2 + i * step:.1f},{y(v)}" for i, v in enumerate(values))
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="live metric trend">'
        f'<line x1="0" x2="{width}" y1="{y(floor)}" y2="{y(floor)}" stroke="#c0392b" '
        'stroke-dasharray="3,2"/>'
        f'<polyline fill="none" stroke="#2c3e50" stroke-width="1.5" points="{points}"/></svg>'
    )


_COLUMNS = (
    "model", "champion", "champion_age_days", "metric", "live_metric", "live_trend",
    "metric_floor", "offline_metric", "offline_delta", "drift", "requests",
    "days_without_traffic", "p99_latency_ms", "gates", "rollbacks", "last_retrain",
    "retirement_reasons",
)  # fmt: skip
_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f4f4f4}"
    "tr.flag td{background:#fde2e2}"
)


_SIGNED = ("live_trend", "offline_delta")


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        sign = "+" if column in _SIGNED else ""
        return f"{value:{sign}.1f}" if abs(value) >= 10 else f"{value:{sign}.3f}"
    return html.escape(str(value))


def render_html(rows: list[ModelHealth], policy: RetirementPolicy, today: dt.date) -> str:
    """One self-contained page: one table, candidates for retirement highlighted."""
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in _COLUMNS)
    body = []
    for row in rows:
        record = health_record(row, policy, today)
        cells = {c: _cell(c, record[c]) for c in _COLUMNS}
        if row.registered_at and silent_days(row, policy, today)[1] == "at least":
            cells["days_without_traffic"] = f"&ge; {cells['days_without_traffic']}"
        spark = sparkline_svg(
            [w.value for w in row.live[-policy.trend_windows :]], row.metric_floor
        )
        cells["live_metric"] += f"<br>{spark}" if spark else ""
        if record["previous_champion"] and record["offline_delta"] is not None:
            cells["offline_delta"] += f" vs v{html.escape(record['previous_champion'])}"
        if record["gate_failures"]:
            cells["gates"] += f"<br>{html.escape(record['gate_failures'])}"
        if record["tampered_versions"]:
            tampered = html.escape(record["tampered_versions"])
            cells["gates"] += f"<br><strong>tampered evaluation.json: {tampered}</strong>"
        flag = ' class="flag"' if record["retirement_candidate"] else ""
        body.append(f"<tr{flag}>" + "".join(f"<td>{cells[c]}</td>" for c in _COLUMNS) + "</tr>")
    policy_text = html.escape(
        f"no traffic for more than {policy.max_days_without_traffic} days, or live metric "
        f"below the gate floor in each of the last {policy.metric_floor_windows} windows. "
        f"Requests (predictions answered: a batch counts each record) and p99 latency (over "
        f"those records) cover the last {policy.traffic_window_days} days."
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Portfolio health</title>'
        f"<style>{_STYLE}</style></head><body><h1>Portfolio health on {today}</h1>"
        f"<p>Retirement policy: {policy_text}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        "</body></html>"
    )
