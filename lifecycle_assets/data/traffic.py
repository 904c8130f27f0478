"""Play production against a running service: simulated requests now, their labels later.

`lifecycle simulate-traffic` uses this to close the loop on one machine: it sends simulated
applications to the model's route `/models/<name>/predict` (loopback, bounded by the rows
given), keeps which prediction answered which application, and lands the true outcomes as
delayed label files for `ground_truth`.

A label is due `label_delay` after its prediction as the service logged it (`predicted_at`,
the time `live_performance` joins on), not after the client saw the answer: the service logs
right after answering, so with no delay the client's own clock would land labels a few
milliseconds before the predictions they label. The log is read from the service's spool
folder on this machine, each poll reading only the bytes appended since the last; a prediction
not found there gets no label, and is counted.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import polars as pl

from lifecycle_assets.data.ground_truth import write_delayed_labels
from lifecycle_assets.data.label_files import timestamps
from lifecycle_assets.data.prediction_log import (
    PREDICTED_AT,
    PREDICTION_ID,
    SEGMENT_SUFFIX,
    day_dir,
)
from lifecycle_assets.data.spool_tail import SpoolTail
from lifecycle_assets.serving.prediction_log import OPEN_SUFFIX
from lifecycle_assets.spec import ModelSpec

# The client's clock when an answer arrived; `predicted_at` is the service's logged time.
RECEIVED_AT = "received_at"
# How long to wait for the service to log what it answered: on one machine its rows are
# written milliseconds after the answer; a service elsewhere never logs here.
LOG_WAIT_SECONDS = 10.0


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
            answers += [{**p, RECEIVED_AT: stamp} for p in response.json()["predictions"]]
    return pl.DataFrame(answers)


def _segments(log_dir: Path, model: str, first: dt.date, last: dt.date) -> list[Path]:
    """The service's segments of those days, the ones it is still writing included."""
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    folders = [Path(day_dir(log_dir, model, day)) for day in days]
    return sorted(
        path
        for folder in folders
        if folder.is_dir()
        for path in folder.iterdir()
        if path.suffix in (SEGMENT_SUFFIX, OPEN_SUFFIX)
    )


def logged_times(
    log_dir: Path,
    model: str,
    answers: pl.DataFrame,
    wait_seconds: float = LOG_WAIT_SECONDS,
    tail: SpoolTail | None = None,
) -> pl.DataFrame:
    """The answers with the service's own `predicted_at` from its log in `log_dir` (null for
    a prediction not logged there within `wait_seconds`). `tail` is the reader (a new one by
    default), given to see what the polls cost."""
    wanted = set(answers[PREDICTION_ID].cast(pl.String))
    # The service's UTC day may be the next one when the traffic crosses midnight.
    first = answers[RECEIVED_AT].min().date() - dt.timedelta(days=1)
    last = answers[RECEIVED_AT].max().date() + dt.timedelta(days=1)
    found: dict[str, str] = {}
    # Each poll reads only what was appended since the last one (`data.spool_tail`).
    tail = tail or SpoolTail()
    deadline = time.monotonic() + wait_seconds
    while True:
        for row in tail.new_rows(_segments(log_dir, model, first, last)):
            if row[PREDICTION_ID] in wanted:
                found[row[PREDICTION_ID]] = row[PREDICTED_AT]
        if len(found) == len(wanted) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    logged = pl.DataFrame(
        [
            pl.Series(PREDICTION_ID, list(found), dtype=pl.String),
            timestamps(pl.Series(PREDICTED_AT, list(found.values()), dtype=pl.String)),
        ]
    )
    return answers.join(logged, on=PREDICTION_ID, how="left", maintain_order="left")


def simulate_traffic(
    url: str,
    batches: list[tuple[dt.date, pl.DataFrame]],
    spec: ModelSpec,
    *,
    labels_dir: Path,
    log_dir: Path,
    label_delay: dt.timedelta,
    label_fraction: float = 1.0,
) -> tuple[pl.DataFrame, list[Path]]:
    """Send every batch, then land each answered application's outcome `label_delay` after
    the service logged its prediction (in `log_dir`, its spool folder). The answers come back
    with `predicted_at` as logged, null for those not in the log, which got no label."""
    if not spec.id_column:
        raise ValueError("simulated traffic needs the spec's id_column to match labels back")
    if label_delay < dt.timedelta(0):
        # Said before any request is sent, not after the traffic has been played.
        raise ValueError(f"labels cannot arrive before the prediction: delay is {label_delay}")
    truth = pl.concat([frame for _, frame in batches])
    answers = logged_times(log_dir, spec.name, send_rows(url, truth, spec))
    files = write_delayed_labels(
        answers.filter(pl.col(PREDICTED_AT).is_not_null()),
        truth,
        record_id_column=spec.id_column,
        label_column=spec.target,
        delay=label_delay,
        out_dir=labels_dir,
        fraction=label_fraction,
    )
    return answers, files
