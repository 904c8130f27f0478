"""The model version's own links: the registry, the promotion ledger, its evaluation, its run.

Each is re-read from its store (the registry through `registry.reader`, read-only): the artifact
is hashed again against its tag where it is stored (downloaded first only when MLflow alone can
reach it), the ledger is asked who moved the alias before the prediction, and the evaluation and
the MLflow run must name the same artifact and training set as the version.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.evaluation_file import read_evaluation
from lifecycle_assets.provenance.links import (
    BROKEN,
    EVALUATION,
    MISSING,
    MLFLOW_RUN,
    MODEL_VERSION,
    OK,
    PROMOTION,
    Link,
    file_link,
)
from lifecycle_assets.registry.gate_record import TamperedVerdict, check_seal
from lifecycle_assets.registry.ledger import COMMITTED, Ledger
from lifecycle_assets.registry.promotions import PLATFORM_KINDS
from lifecycle_assets.registry.reader import RegistryReader, RunRecord, local_or_stored
from lifecycle_assets.registry.refs import ModelRef


def _when(value: str | None) -> dt.datetime | None:
    """A stored time; the project writes UTC, so one without an offset is read as UTC."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _ms(millis: int | None) -> str | None:
    if millis is None:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="seconds")


def _downloaded_link(ref: ModelRef, artifact: str, details: dict[str, Any], via: str | None):
    """The artifact fetched through MLflow (a store only MLflow reaches), then hashed."""
    from mlflow.exceptions import MlflowException

    from lifecycle_assets.registry.models import download_model

    ident = f"{ref.name}/v{ref.version}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = download_model(ref, tmp) / artifact
        except MlflowException as error:
            reason = f"artifact cannot be downloaded: {str(error).splitlines()[0]}"
            return Link(MODEL_VERSION, ident, MISSING, reason, details, via)
        return file_link(MODEL_VERSION, ident, local, ref.artifact_sha256, details, via)


def version_link(
    reader: RegistryReader, name: str, version: str, via: str | None
) -> tuple[Link, ModelRef | None]:
    """The registered version, with its artifact hashed against its tag where it is stored."""
    ident = f"{name}/v{version}"
    ref = reader.version(name, version)
    if ref is None:
        reason = f"the registry has no version {version} of {name}"
        return Link(MODEL_VERSION, ident, MISSING, reason, via=via), None
    details = {
        "name": name, "version": version, "run_id": ref.run_id, "source": ref.source,
        "registered_at": _ms(ref.created_ms), "aliases": list(ref.aliases),
        "artifact_sha256": ref.artifact_sha256, "tags": dict(ref.tags),
    }  # fmt: skip
    if not ref.artifact_sha256:
        return Link(MODEL_VERSION, ident, BROKEN, "no artifact SHA-256 recorded", details, via), ref
    artifact = ref.tags.get(config.TAG_ARTIFACT_PATH, config.SKOPS_FILE)
    folder = local_or_stored(reader.model_location(ref))
    if folder is None:
        checked = _downloaded_link(ref, artifact, details, via)
    else:
        stored = f"{folder.rstrip('/')}/{artifact}"
        checked = file_link(MODEL_VERSION, ident, stored, ref.artifact_sha256, details, via)
    # Say where the artifact lives in the registry's terms, whatever path was hashed.
    checked.details["path"] = f"models:/{name}/{version}/{artifact}"
    return Link(checked.kind, ident, checked.status, checked.reason, checked.details, via), ref


def answered_by_link(prediction: Link, ref: ModelRef) -> Link:
    """The prediction row and the version it names agree on the training data digest."""
    logged, tagged = prediction.details["training_digest"], ref.training_digest
    if prediction.status == OK and logged and logged != tagged:
        reason = f"the prediction logged training digest {logged}, the version records {tagged}"
        return Link(prediction.kind, prediction.id, BROKEN, reason, prediction.details)
    return prediction


def promotion_link(ledger: Ledger, ref: ModelRef, alias: str, at: str | None, via: str) -> Link:
    """Who moved `alias` to this version and when, from the ledger, before the prediction.
    Only the platform's own moves count: an `external` entry records an alias set in MLflow
    directly (found by reconcile), which no gate or person of the platform approved."""
    entries = ledger.entries(ref.name, alias, COMMITTED)
    moves = [
        e.to_dict() for e in entries if e.to_version == ref.version and e.kind in PLATFORM_KINDS
    ]
    predicted = _when(at)
    before = [e for e in entries if predicted is None or _when(e.time) <= predicted]
    details = {
        "alias": alias,
        "moves": moves,
        # Right after a move the service may still answer with the old holder for a poll
        # interval, so a different holder here is reported, not judged.
        "holder_at_prediction": before[-1].to_version if before else None,
    }
    ident = f"{ref.name}/{alias}/v{ref.version}"
    held = bool(moves) if predicted is None else any(_when(m["time"]) <= predicted for m in moves)
    if not held:
        reason = f"the ledger records no move of `{alias}` to v{ref.version} before the prediction"
        if any(e.to_version == ref.version and e.kind == "external" for e in entries):
            reason += " (only an alias set outside the platform, which reconcile recorded)"
        return Link(PROMOTION, ident, MISSING, reason, details, via)
    return Link(PROMOTION, ident, OK, "", details, via)


def evaluation_link(
    ref: ModelRef, settings: Settings, ledger: Ledger, via: str, run: RunRecord | None = None
) -> Link:
    """The gates the version was judged by, with their values; the link checks the report is
    about this very artifact. A failed gate is shown, not judged: promoting past a gate by hand
    is a recorded human decision (see the ledger), not a broken chain."""
    ident = f"{ref.name}/v{ref.version}"
    found, source = read_evaluation(
        settings.reports_dir, ref.name, ref.version, ref.run_id, run_first=True,
        run_artifacts=local_or_stored(run.artifact_uri) if run is not None else None,
    )  # fmt: skip
    try:  # the gates shown are the ones sealed at evaluation, or the link is broken
        unsealed = check_seal(ledger, ref, found, source)
    except TamperedVerdict as tampered:
        reason = str(tampered).removesuffix("; nothing was changed")
        return Link(EVALUATION, ident, BROKEN, reason, {"source": source}, via)
    if found is None:
        return Link(EVALUATION, ident, MISSING, "no evaluation.json in the run or reports", via=via)
    evaluation = json.loads(found)
    gates = evaluation.get("gates", [])
    evaluated = evaluation.get("model", {})
    details = {
        "source": source,
        "evaluated_version": evaluated.get("version"),
        "gates": gates,
        "all_passed": all(g.get("passed") for g in gates),
        "metrics": evaluation.get("report", {}).get("metrics", {}),
        **({"unsealed": unsealed} if unsealed else {}),
    }
    evaluated_sha = evaluated.get("tags", {}).get(config.TAG_ARTIFACT_SHA256)
    if evaluated_sha != ref.artifact_sha256:
        reason = f"the evaluation is of artifact {evaluated_sha}, not {ref.artifact_sha256}"
        return Link(EVALUATION, ident, BROKEN, reason, details, via)
    return Link(EVALUATION, ident, OK, "", details, via)


def run_link(reader: RegistryReader, ref: ModelRef, via: str) -> tuple[Link, RunRecord | None]:
    """The MLflow run that trained the version; its tags must name the same digest and file."""
    run = reader.run(ref.run_id) if ref.run_id else None
    if run is None:
        reason = f"the tracking store has no run {ref.run_id!r}"
        return Link(MLFLOW_RUN, ref.run_id, MISSING, reason, via=via), None
    tags = run.tags
    details = {
        "status": run.status,
        "started_at": _ms(run.start_time), "ended_at": _ms(run.end_time),
        "experiment_id": run.experiment_id,
        "git_commit": tags.get(config.TAG_GIT_COMMIT), "dagster_run_id": tags.get("dagster_run_id"),
        "training_set_digest": tags.get(config.TAG_TRAINING_DIGEST),
        "params": dict(run.params), "metrics": dict(run.metrics),
        "datasets": {name: dict(tags) for name, tags in run.datasets.items()},
    }  # fmt: skip
    for tag, expected in (
        (config.TAG_TRAINING_DIGEST, ref.training_digest),
        (config.TAG_ARTIFACT_SHA256, ref.artifact_sha256),
    ):
        if tags.get(tag) and tags[tag] != expected:
            reason = f"the run's {tag} is {tags[tag]}, the version records {expected}"
            return Link(MLFLOW_RUN, ref.run_id, BROKEN, reason, details, via), run
    return Link(MLFLOW_RUN, ref.run_id, OK, "", details, via), run
