"""Write answered and shadow predictions to the prediction log (`bentoml.monitor`).

Every row carries the model's output (`prediction`, and `score`: the positive-class probability
of a classifier or a regressor's predicted value), the model that produced it (`model_name`,
`model_version`, `training_digest`), the server-side latency of its request (`latency_ms`, null
on shadow rows) and its `variant`: `champion` or `canary` for answers, `shadow` for rows never
returned, whose `shadow_of` is the prediction id of the answer they mirror (null on answered
rows). Readers of the log that want what clients received filter out `variant == "shadow"`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import bentoml

from lifecycle_assets.serving.model_set import ModelSet
from lifecycle_assets.spec import ModelSpec


def write_rows(
    spec: ModelSpec,
    log_path: str,
    rows: list[dict[str, Any]],
    records: list[dict[str, Any]],
    models: ModelSet,
    latencies: list[float] | None = None,
) -> None:
    """One monitor row per prediction: inputs, outputs and the model's provenance.

    `latencies` holds each answered row's server-side latency in ms (None: shadow rows).
    """
    digests = {
        m.ref.version: m.ref.training_digest
        for m in (models.champion, models.canary, models.shadow)
        if m is not None
    }
    n = len(rows)
    columns: list[tuple[str, list[Any], str, str]] = [
        (
            f.name,
            [record.get(f.name) for record in records],
            "feature",
            "numerical" if f.type == "numeric" else "categorical",
        )
        for f in spec.features
    ]
    kind = "categorical" if spec.is_classifier else "numerical"
    score_key = "probability" if spec.is_classifier else "prediction"
    columns += [
        ("score", [r.get("score", r.get(score_key)) for r in rows], "prediction", "numerical"),
        ("prediction", [r["prediction"] for r in rows], "prediction", kind),
        ("prediction_id", [r["prediction_id"] for r in rows], "id", "categorical"),
        ("record_id", [r["record_id"] for r in rows], "id", "categorical"),
        ("model_name", [r["model_name"] for r in rows], "meta", "categorical"),
        ("model_version", [r["model_version"] for r in rows], "meta", "categorical"),
        ("variant", [r["variant"] for r in rows], "meta", "categorical"),
        # Set on shadow rows only: the prediction id of the answer the shadow row mirrors.
        ("shadow_of", [r.get("shadow_of") for r in rows], "id", "categorical"),
        (
            "training_digest",
            [digests.get(r["model_version"], "") for r in rows],
            "meta",
            "categorical",
        ),
        ("latency_ms", [None] * n if latencies is None else latencies, "meta", "numerical"),
        # The monitor's own `timestamp` is naive local time; this one is unambiguous.
        ("predicted_at", [dt.datetime.now(dt.UTC).isoformat()] * n, "meta", "categorical"),
    ]
    with bentoml.monitor(spec.name, monitor_options={"log_path": log_path}) as mon:
        for name, values, role, kind in columns:
            mon.log_batch(values, name, role, kind)
