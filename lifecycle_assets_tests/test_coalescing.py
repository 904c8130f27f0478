"""The predictor's coalescer: a lone request is answered without a hop, requests arriving
together are still scored as one batch, and every answer is logged once with its own rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections import Counter
from typing import Any

from lifecycle_assets.config import Settings
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.serving.model_source import load_served_model
from lifecycle_assets.serving.predictor import Predictor
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.log_rows import logged_lines


def test_a_lone_request_is_answered_at_once_and_a_burst_is_one_batch(
    registered_champion, spec: ModelSpec
) -> None:
    settings = Settings.from_env()
    served = load_served_model({**os.environ, "LIFECYCLE_MODEL_SOURCE": "registry"})
    predictor = Predictor(served, settings)
    columns = [*spec.input_columns, spec.id_column]
    records = simulate_day(dt.date(2026, 3, 5), rows_per_day=9).select(columns).to_dicts()
    batches = [predictor.validator.validate([record]) for record in records]

    async def scenario() -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
        # Idle coalescer: the coroutine finishes without ever suspending (no hop, no turn).
        lone = predictor.predict(batches[0])
        try:
            lone.send(None)
        except StopIteration as done:
            lone_rows = done.value
        else:  # pragma: no cover - the assertion below says what went wrong
            lone.close()
            lone_rows = []
        await asyncio.sleep(0)
        # Eight requests in one loop turn: the first finds the coalescer idle, the seven
        # others wait for one flush and are scored together.
        burst = await asyncio.gather(*(predictor.predict(batch) for batch in batches[1:]))
        await asyncio.sleep(0.2)  # the log is written after the answers
        return lone_rows, burst

    lone_rows, burst = asyncio.run(scenario())
    assert len(lone_rows) == 1, "a lone request must be answered without waiting"
    answers = [lone_rows, *burst]
    for batch, rows in zip(batches, answers, strict=True):
        assert [row["record_id"] for row in rows] == batch.ids  # each answer is its own
    answered = {row["prediction_id"]: row for rows in answers for row in rows}
    assert len(answered) == 9

    logged = logged_lines(settings.prediction_log_dir, spec.name)
    assert sorted(row["prediction_id"] for row in logged) == sorted(answered)  # one row each
    for row in logged:
        assert row["score"] == answered[row["prediction_id"]]["probability"]
    # Rows of one batch share its `predicted_at`: the lone request, the burst's first, then
    # the seven others together.
    sizes = Counter(row["predicted_at"] for row in logged)
    assert sorted(sizes.values()) == [1, 1, 7]
