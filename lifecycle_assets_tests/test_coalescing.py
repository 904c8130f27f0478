"""The predictor's coalescer: a lone request is answered without a hop, requests arriving
together are still scored as one batch, and every answer is logged once with its own rows."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
from collections import Counter
from typing import Any

from lifecycle_assets.config import Settings
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.serving.model_set import ModelSet
from lifecycle_assets.serving.model_source import load_served_model
from lifecycle_assets.serving.predictor import Predictor
from lifecycle_assets.serving.requests import RequestError, ValidatedBatch
from lifecycle_assets.spec import FeatureSpec, ModelSpec
from lifecycle_assets_tests.log_rows import logged_lines


def predictor_and_batches(
    spec: ModelSpec, requests: int
) -> tuple[Settings, Predictor, list[ValidatedBatch]]:
    """A predictor of the registered champion and `requests` validated one-record batches."""
    settings = Settings.from_env()
    served = load_served_model({**os.environ, "LIFECYCLE_MODEL_SOURCE": "registry"})
    predictor = Predictor(served, settings)
    columns = [*spec.input_columns, spec.id_column]
    records = simulate_day(dt.date(2026, 3, 5), rows_per_day=requests).select(columns).to_dicts()
    return settings, predictor, [predictor.validator.validate([record]) for record in records]


def test_a_lone_request_is_answered_at_once_and_a_burst_is_one_batch(
    registered_champion, spec: ModelSpec
) -> None:
    settings, predictor, batches = predictor_and_batches(spec, 9)

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


def test_requests_checked_against_a_swapped_out_spec_are_refused_not_scored(
    registered_champion, spec: ModelSpec
) -> None:
    """A request waits for its batch's flush after validation; a champion swapped in meanwhile
    with other fields must not score records checked against the old ones (503, send again),
    while one with the same fields (a new version of an unchanged spec) answers them."""
    settings, predictor, batches = predictor_and_batches(spec, 6)
    served = predictor.served

    def champion_with(features: tuple[FeatureSpec, ...]) -> ModelSet:
        # An equal spec built anew (as a new version's is), or one with a field more.
        new_spec = served.loaded.spec.model_copy(update={"features": features})
        loaded = dataclasses.replace(served.loaded, spec=new_spec)
        return ModelSet(champion=dataclasses.replace(served, loaded=loaded))

    same_fields = champion_with(tuple(f.model_copy() for f in spec.features))
    extra = spec.features[0].model_copy(update={"name": "new_required_field"})
    other_fields = champion_with((*spec.features, extra))

    async def burst(models: ModelSet, chosen: list[Any]) -> list[Any]:
        async def swap() -> None:
            # Runs after the burst's first request (answered inline) and before the flush
            # that scores the others, as the registry watcher's publish can.
            predictor.models = models

        *answers, _ = await asyncio.gather(
            *(predictor.predict(batch) for batch in chosen), swap(), return_exceptions=True
        )
        await asyncio.sleep(0.2)  # the log is written after the answers
        return answers

    same = asyncio.run(burst(same_fields, batches[:3]))
    assert all(isinstance(rows, list) and len(rows) == 1 for rows in same), same

    other = asyncio.run(burst(other_fields, batches[3:]))
    assert isinstance(other[0], list), "the first request was scored before the swap"
    for refused in other[1:]:
        assert isinstance(refused, RequestError) and refused.status == 503, refused
        assert "became the champion while this request waited" in refused.message

    logged = logged_lines(settings.prediction_log_dir, spec.name)
    answered = [row for rows in [*same, other[0]] for row in rows]
    assert sorted(row["prediction_id"] for row in logged) == sorted(
        row["prediction_id"] for row in answered
    ), "a refused request must be neither scored nor logged"
