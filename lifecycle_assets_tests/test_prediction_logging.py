"""A prediction log that cannot be written is reported, and the answers still go out."""

import asyncio
import datetime as dt
import os

from lifecycle_assets.config import Settings
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.serving.model_source import load_served_model
from lifecycle_assets.serving.service import Predictor


def test_unwritable_log_location_is_surfaced_not_silent(registered_champion, spec) -> None:
    settings = Settings.from_env()
    blocked = settings.prediction_log_dir / spec.name
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the log folder should be")
    served = load_served_model({**os.environ, "LIFECYCLE_MODEL_SOURCE": "registry"})
    predictor = Predictor(served, settings)
    records = (
        simulate_day(dt.date(2026, 3, 5), rows_per_day=4).select(spec.input_columns).to_dicts()
    )

    async def predict_then_let_the_log_run() -> list[dict]:
        rows = await predictor.predict(predictor.validator.validate(records))
        await asyncio.sleep(0.2)
        return rows

    rows = asyncio.run(predict_then_let_the_log_run())
    assert len(rows) == 4 and all(0 <= r["probability"] <= 1 for r in rows)
    assert predictor.log_failures == 4
    assert predictor.metadata()["prediction_log_failures"] == 4
    assert predictor.metadata()["health"]["prediction_log"] == "failing: ENOTDIR, 4 rows lost"
