"""Walk one prediction back to the raw batches it came from, checking every link on the way.

A trace is an audit, so nothing is taken on trust: each link is re-read from its store (the
prediction log, the registry, the ledger, the MLflow run, the lake) and every recorded hash is
recomputed from the bytes on disk; each link is `ok`, `broken` or `missing` (see `links`).
Nothing here imports Dagster, so the CLI and scripts can run it anywhere. The links are checked
in `predictions`, `version_links` and `lake_links`; this module walks from one to the next.
"""

from __future__ import annotations

from typing import Any

from lifecycle_assets.config import Settings
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.provenance.lake_links import data_links
from lifecycle_assets.provenance.links import MISSING, TRAINING_SET, Link, Trace
from lifecycle_assets.provenance.predictions import find_prediction, prediction_link
from lifecycle_assets.provenance.version_links import (
    answered_by_link,
    evaluation_link,
    promotion_link,
    run_link,
    version_link,
)
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.reader import RegistryReader, reader_for
from lifecycle_assets.registry.refs import ModelRef


def version_chain(
    reader: RegistryReader,
    settings: Settings,
    ledger: Ledger,
    name: str,
    version: str,
    via: str | None = None,
) -> tuple[list[Link], ModelRef | None]:
    """Model version, its evaluation (checked against `ledger`'s seal), its MLflow run and all
    its data: shared with lineage."""
    model, ref = version_link(reader, name, version, via)
    if ref is None:
        return [model], None
    run_, run = run_link(reader, ref, model.key)
    links = [model, evaluation_link(ref, settings, ledger, model.key, run), run_]
    lake = Lake(settings.lake_dir, settings.quarantine_dir, name)
    if not ref.training_digest:
        reason = "the version records no training set digest"
        links.append(Link(TRAINING_SET, "?", MISSING, reason, via=run_.key))
        return links, ref
    return links + data_links(lake, ref.training_digest, run, run_.key), ref


def trace_prediction(prediction_id: str, settings: Settings, client: Any = None) -> Trace:
    """Every link from `prediction_id` to the raw batch files, each one checked.

    The registry is read through `registry.reader` (MLflow's SQLite file directly, or
    `client`/MlflowClient for any other store)."""
    found = find_prediction(settings, prediction_id)
    prediction = prediction_link(prediction_id, found)
    if found.row is None:
        return Trace(prediction_id, (prediction,))
    reader, ledger = reader_for(settings, client), Ledger.for_settings(settings)
    name, version = prediction.details["model_name"], prediction.details["model_version"]
    chain, ref = version_chain(reader, settings, ledger, name, version, prediction.key)
    if ref is None:
        return Trace(prediction_id, (prediction, *chain))
    promotion = promotion_link(
        ledger, ref, prediction.details["variant"],
        prediction.details["predicted_at"], chain[0].key,
    )  # fmt: skip
    links = (answered_by_link(prediction, ref), chain[0], promotion, *chain[1:])
    return Trace(prediction_id, links)
