"""Play production against a running service: simulated requests now, their labels later.

`lifecycle simulate-traffic` uses this to close the loop on one machine: it sends simulated
applications to the model's route `/models/<name>/predict` (loopback, bounded by the rows
given), keeps which prediction answered which application, and lands the true outcomes as
delayed label files for `ground_truth`.

A label is due `label_delay` after its prediction as the service logged it (`predicted_at`,
the time `live_performance` joins on), not after the client saw the answer: the service logs
right after answering, so with no delay the client's own clock would land labels a few
milliseconds before the predictions they label. The log is read where it lives: the spool
folder of a service on this machine, each poll reading only the bytes appended since the last,
and, in team mode, the shared log folder its replicas ship their closed segments to (a service
on any machine), each shipped segment read once; a prediction found in neither gets no label,
and is counted.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from lifecycle_assets import storage
from lifecycle_assets.data.ground_truth import write_delayed_labels
from lifecycle_assets.data.label_files import timestamps
from lifecycle_assets.data.prediction_log import (
    PREDICTED_AT,
    PREDICTION_ID,
    SEGMENT_SUFFIX,
    logged_rows,
    segment_files,
)
from lifecycle_assets.data.spool_tail import SpoolTail
from lifecycle_assets.serving.prediction_log import OPEN_SUFFIX
from lifecycle_assets.spec import ModelSpec

# The client's clock when an answer arrived; `predicted_at` is the service's logged time.
RECEIVED_AT = "received_at"
# How long to wait for the service to log what it answered: on one machine its rows are
# written milliseconds after the answer; shipped rows reach the shared log within two shipping
# periods (`log_wait_seconds`).
LOG_WAIT_SECONDS = 10.0
POLL_SECONDS = 0.2
# A service's spool on this machine: its closed segments and the ones it is still writing.
SPOOL_SUFFIXES = (SEGMENT_SUFFIX, OPEN_SUFFIX)


def log_wait_seconds(ship_seconds: float | None) -> float:
    """How long to look for the logged rows: a shipped row waits for its segment to age
    (one shipping period) and for the next shipping tick (one more)."""
    return LOG_WAIT_SECONDS + (2 * ship_seconds if ship_seconds else 0.0)


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


def _wanted_times(rows: Iterable[dict[str, Any]], wanted: set[str]) -> dict[str, str]:
    """`predicted_at` of the rows of the wanted prediction ids."""
    return {row[PREDICTION_ID]: row[PREDICTED_AT] for row in rows if row[PREDICTION_ID] in wanted}


def _shipped_times(paths: list[Path], wanted: set[str]) -> dict[str, str]:
    """`predicted_at` of the wanted prediction ids in these shipped segments (one removed
    since it was listed is skipped)."""
    found = {}
    for path in paths:
        try:
            found.update(_wanted_times((row for _, row in logged_rows([path])), wanted))
        except FileNotFoundError:
            continue
    return found


def logged_times(
    log_dirs: Sequence[Path],
    model: str,
    answers: pl.DataFrame,
    wait_seconds: float = LOG_WAIT_SECONDS,
    tail: SpoolTail | None = None,
) -> pl.DataFrame:
    """The answers with the service's own `predicted_at` from its log in `log_dirs` (null for
    a prediction not logged there within `wait_seconds`). A local spool is read on from where
    the last poll stopped (`tail`, a new reader by default, given to see what the polls cost);
    a shipped segment never changes, so each one on object storage is read once."""
    wanted = set(answers[PREDICTION_ID].cast(pl.String))
    # The service's UTC day may be the next one when the traffic crosses midnight.
    first = answers[RECEIVED_AT].min().date() - dt.timedelta(days=1)
    last = answers[RECEIVED_AT].max().date() + dt.timedelta(days=1)
    found: dict[str, str] = {}
    tail = tail or SpoolTail()
    shipped: set[str] = set()
    deadline = time.monotonic() + wait_seconds
    while True:
        for log_dir in log_dirs:
            if not storage.is_remote(log_dir):
                spool = segment_files(log_dir, model, first, last, suffixes=SPOOL_SUFFIXES)
                found.update(_wanted_times(tail.new_rows(spool), wanted))
                continue
            paths = segment_files(log_dir, model, first, last)
            paths = [p for p in paths if str(p) not in shipped]
            shipped.update(str(p) for p in paths)
            found.update(_shipped_times(paths, wanted))
        if len(found) == len(wanted) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
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
    log_dirs: Sequence[Path],
    label_delay: dt.timedelta,
    label_fraction: float = 1.0,
    log_wait_seconds: float = LOG_WAIT_SECONDS,
) -> tuple[pl.DataFrame, list[Path]]:
    """Send every batch, then land each answered application's outcome `label_delay` after
    the service logged its prediction (in one of `log_dirs`: its spool folder, the shared log).
    The answers come back with `predicted_at` as logged, null for those not in the log, which
    got no label."""
    if not spec.id_column:
        raise ValueError("simulated traffic needs the spec's id_column to match labels back")
    if label_delay < dt.timedelta(0):
        # Said before any request is sent, not after the traffic has been played.
        raise ValueError(f"labels cannot arrive before the prediction: delay is {label_delay}")
    truth = pl.concat([frame for _, frame in batches])
    answers = logged_times(log_dirs, spec.name, send_rows(url, truth, spec), log_wait_seconds)
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
