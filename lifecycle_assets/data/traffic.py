"""Play production against a running service: simulated requests now, their labels later.

`lifecycle simulate-traffic` uses this to close the loop on one machine: it sends simulated
applications to the model's route `/models/<name>/predict` (loopback, bounded by the rows
given), keeps which prediction answered which application, and lands the true outcomes as
delayed label files for `ground_truth`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import polars as pl

from lifecycle_assets.data.ground_truth import write_delayed_labels
from lifecycle_assets.spec import ModelSpec


def send_rows(
    url: str, rows: pl.DataFrame, spec: ModelSpec, *, batch_size: int = 50, timeout: float = 30
) -> pl.DataFrame:
    """POST the rows' spec columns (and id) in batches; one answer row per request row."""
    columns = [f.name for f in spec.features] + ([spec.id_column] if spec.id_column else [])
    route = f"/models/{spec.name}/predict"
    answers = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout) as client:
        for start in range(0, rows.height, batch_size):
            records = rows.slice(start, batch_size).select(columns).to_dicts()
            response = client.post(route, content=json.dumps({"records": records}))
            if response.status_code != 200:
                raise RuntimeError(f"{url}{route} answered {response.status_code}: {response.text}")
            stamp = dt.datetime.now(dt.UTC)
            answers += [{**p, "predicted_at": stamp} for p in response.json()["predictions"]]
    return pl.DataFrame(answers)


def simulate_traffic(
    url: str,
    batches: list[tuple[dt.date, pl.DataFrame]],
    spec: ModelSpec,
    *,
    labels_dir: Path,
    label_delay: dt.timedelta,
    label_fraction: float = 1.0,
) -> tuple[pl.DataFrame, list[Path]]:
    """Send every batch, then land each answered application's outcome `label_delay` later."""
    if not spec.id_column:
        raise ValueError("simulated traffic needs the spec's id_column to match labels back")
    truth = pl.concat([frame for _, frame in batches])
    answers = send_rows(url, truth, spec)
    files = write_delayed_labels(
        answers,
        truth,
        record_id_column=spec.id_column,
        label_column=spec.target,
        delay=label_delay,
        out_dir=labels_dir,
        fraction=label_fraction,
    )
    return answers, files
