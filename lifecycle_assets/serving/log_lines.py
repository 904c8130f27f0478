"""The prediction log's lines: one strict-JSON line per answered or shadow row.

Built for every answer on the event loop, so what every line of one model set shares (digests,
the score key, feature names) is computed once; `valid_json.dumps` builds its encoder once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from lifecycle_assets.data import valid_json
from lifecycle_assets.serving.model_set import ModelSet

# Keys of an answer row that the log names differently (`probability` is logged as `score`).
_RENAMED = {"probability"}
# Keys every answer row has, all logged under the line's own keys: rows with no other key
# (flags, a shadow's score) skip the look for extras.
_ANSWER_KEYS = frozenset(
    (
        "prediction",
        "probability",
        "prediction_id",
        "record_id",
        "model_name",
        "model_version",
        "variant",
    )
)


class _Layout:
    """What every line logged for one model set shares: digests, score key, feature names."""

    def __init__(self, models: ModelSet) -> None:
        self.models = models
        self.digests = {
            m.ref.version: m.ref.training_digest
            for m in (models.champion, models.canary, models.shadow)
            if m is not None
        }
        spec = models.champion.loaded.spec
        self.score_key = "probability" if spec.is_classifier else "prediction"
        self.feature_names = tuple(f.name for f in spec.features)


_last_layout: _Layout | None = None


def _layout(models: ModelSet) -> _Layout:
    global _last_layout
    layout = _last_layout
    if layout is None or layout.models is not models:
        layout = _last_layout = _Layout(models)
    return layout


def log_lines(
    rows: list[dict[str, Any]],
    records: list[dict[str, Any]],
    models: ModelSet,
    latencies: list[float] | None,
    now: dt.datetime,
) -> list[bytes]:
    """One strict-JSON line per row: bookkeeping, outputs, then the request's inputs."""
    layout = _layout(models)
    digests, score_key, feature_names = layout.digests, layout.score_key, layout.feature_names
    predicted_at = now.isoformat(timespec="microseconds")
    lines = []
    for index, (row, record) in enumerate(zip(rows, records, strict=True)):
        entry: dict[str, Any] = {
            "prediction_id": row["prediction_id"],
            "predicted_at": predicted_at,
            "model_name": row["model_name"],
            "model_version": row["model_version"],
            "variant": row["variant"],
            "record_id": row["record_id"],
            # Set on shadow rows only: the prediction id of the answer the shadow row mirrors.
            "shadow_of": row.get("shadow_of"),
            "training_digest": digests.get(row["model_version"], ""),
            "latency_ms": None if latencies is None else latencies[index],
            "prediction": row["prediction"],
            "score": row.get("score", row.get(score_key)),
        }
        # Anything else the answer carries (e.g. flags) is logged as answered.
        if row.keys() - _ANSWER_KEYS:
            for key, value in row.items():
                if key not in entry and key not in _RENAMED:
                    entry[key] = value
        entry.update(zip(feature_names, map(record.get, feature_names), strict=True))
        lines.append((valid_json.dumps(entry) + "\n").encode())
    return lines
