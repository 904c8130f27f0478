"""Walk one prediction back to the raw batches it came from, checking every link on the way.

A trace is an audit, so nothing is taken on trust: each link is re-read from its store (the
prediction log, the registry, the ledger, the MLflow run, the lake) and every recorded hash is
recomputed from the bytes on disk. A link is `ok`, `broken` (found, but it disagrees with what
was recorded: a hash mismatch, two stores naming different digests) or `missing` (the record
points at nothing). Nothing here imports Dagster, so the CLI and scripts can run it anywhere.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.data.lake import FEATURES, PREDICTION_LOGS, Lake, sha256_bytes
from lifecycle_assets.data.prediction_log import log_files
from lifecycle_assets.registry.artifacts import sha256_file
from lifecycle_assets.registry.ledger import COMMITTED, Ledger
from lifecycle_assets.registry.models import ModelRef, download_model, get_version
from lifecycle_assets.registry.tracking import configure_mlflow

OK, BROKEN, MISSING = "ok", "broken", "missing"
# Kinds of link, in the order a trace walks them.
PREDICTION, MODEL_VERSION, PROMOTION, EVALUATION = (
    "prediction", "model_version", "promotion", "evaluation",
)  # fmt: skip
MLFLOW_RUN, TRAINING_SET, RAW_BATCH = "mlflow_run", "training_set", "raw_batch"
# The monitor's schema file names each logged column's role; inputs are its `feature` columns
# and outputs its `prediction` columns (`score` or `probability`, whichever the service wrote).
# Without a schema file, a row's inputs are whatever is not a known output or bookkeeping column.
OUTPUT_COLUMNS = ("prediction", "score", "probability")
EXTRA_OUTPUTS = ("latency_ms",)
META_COLUMNS = (
    "prediction_id", "record_id", "model_name", "model_version", "variant", "shadow_of",
    "training_digest", "predicted_at", "timestamp", "request_id", "trace_id", "span_id",
)  # fmt: skip


@dataclass(frozen=True)
class Link:
    """One step of the chain: what it is, whether it holds, why not, and what was found."""

    kind: str
    id: str
    status: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # `kind:id` of the link that pointed here, so the chain can be drawn as a tree.
    via: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Trace:
    """Every link from a prediction back to its raw batches, in walking order."""

    prediction_id: str
    links: tuple[Link, ...]

    @property
    def ok(self) -> bool:
        return all(link.status == OK for link in self.links)

    def problems(self) -> list[Link]:
        return [link for link in self.links if link.status != OK]

    def of_kind(self, kind: str) -> list[Link]:
        return [link for link in self.links if link.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "ok": self.ok,
            "links": [asdict(link) for link in self.links],
        }


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


def file_link(
    kind: str,
    ident: str,
    path: str | Path,
    expected: str,
    details: dict[str, Any],
    via: str | None,
) -> Link:
    """A stored file checked against the SHA-256 recorded for it."""
    path = Path(path)
    details = {**details, "path": str(path), "sha256": expected}
    if not path.is_file():
        return Link(kind, ident, MISSING, f"file {path} does not exist", details, via)
    actual = sha256_file(path)
    details["actual_sha256"] = actual
    if actual != expected:
        reason = f"hash mismatch: {path} has SHA-256 {actual}, {expected} was recorded"
        return Link(kind, ident, BROKEN, reason, details, via)
    return Link(kind, ident, OK, "", details, via)


# -- the prediction ------------------------------------------------------------------------
def _logged_lines(log_dir: Path) -> Iterator[tuple[Path, str]]:
    models = sorted(p.name for p in log_dir.iterdir() if p.is_dir()) if log_dir.exists() else []
    for model in models:
        for path in log_files(log_dir, model):
            with path.open() as handle:
                for line in handle:
                    yield path, line


@dataclass
class Found:
    """Where a prediction was logged, the shadow rows that mirror it, and any integrity problem."""

    row: dict[str, Any] | None = None
    where: str = ""
    shadows: list[dict[str, Any]] = field(default_factory=list)
    problem: str = ""


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}


def _from_lake(settings: Settings, prediction_id: str) -> Found:
    """The lake's daily prediction tables, each re-hashed: a row from a table whose bytes
    changed is still shown, but its link is broken; an unreadable table is named, not skipped."""
    problems = []
    folders = sorted(p for p in settings.lake_dir.iterdir() if p.is_dir())
    for lake in (Lake(settings.lake_dir, settings.quarantine_dir, f.name) for f in folders):
        for day in lake.daily_days(PREDICTION_LOGS):
            entry = lake.daily_entry(PREDICTION_LOGS, day) or {}
            if not Path(entry["path"]).is_file():
                problems.append(f"file {entry['path']} does not exist")
                continue
            data = Path(entry["path"]).read_bytes()
            actual = sha256_bytes(data)
            mismatch = "" if actual == entry["sha256"] else (
                f"hash mismatch: {entry['path']} has SHA-256 {actual}, "
                f"{entry['sha256']} was recorded"
            )  # fmt: skip
            try:
                rows = pl.read_parquet(io.BytesIO(data))
            except pl.exceptions.PolarsError as error:
                problems.append(f"{mismatch or entry['path']} ({error})")
                continue
            if "prediction_id" not in rows.columns:
                continue
            hit = rows.filter(pl.col("prediction_id") == prediction_id)
            if not hit.height:
                problems += [mismatch] if mismatch else []
                continue
            found = Found(_plain(hit.row(0, named=True)), entry["path"], problem=mismatch)
            if "shadow_of" in rows.columns:
                mirrors = rows.filter(pl.col("shadow_of") == prediction_id)
                found.shadows = [_plain(r) for r in mirrors.to_dicts()]
            return found
    return Found(problem="; ".join(problems))


def find_prediction(settings: Settings, prediction_id: str) -> Found:
    """The logged row of `prediction_id`, where it was found, and any shadow rows mirroring it.

    The service's JSON-lines log is read first (it is what the service wrote); the lake's daily
    prediction tables are the fallback once the log has been rotated away.
    """
    found, shadows = Found(), {}
    for path, line in _logged_lines(settings.prediction_log_dir):
        if prediction_id not in line:  # cheap filter before parsing every line
            continue
        row = json.loads(line)
        if row.get("prediction_id") == prediction_id and found.row is None:
            found = Found(row, str(path))
        elif row.get("shadow_of") == prediction_id:
            shadows[row["prediction_id"]] = row
    if found.row is None and settings.lake_dir.exists():
        return _from_lake(settings, prediction_id)
    found.shadows = list(shadows.values())
    return found


def column_roles(log_dir: Path, model: str) -> dict[str, str]:
    """Each logged column's role (`feature`, `prediction`, `id`, `meta`) from the monitor."""
    roles: dict[str, str] = {}
    for path in sorted((Path(log_dir) / model / "schema").glob("schema.*.log*")):
        for line in path.read_text().splitlines():
            if line.strip():
                roles.update({c["name"]: c["role"] for c in json.loads(line).get("columns", [])})
    return roles


def prediction_link(prediction_id: str, found: Found, roles: dict[str, str]) -> Link:
    """The prediction as logged: time, inputs, outputs, and which alias and version answered."""
    row = found.row
    if row is None:
        reason = "no prediction with this id in the prediction logs or the lake"
        if found.problem:
            reason += f"; prediction tables that fail their check: {found.problem}"
        return Link(PREDICTION, prediction_id, MISSING, reason)
    if roles:
        outputs = {k: v for k, v in row.items() if roles.get(k) == "prediction"}
        inputs = {k: v for k, v in row.items() if roles.get(k) == "feature"}
    else:
        outputs = {k: row[k] for k in OUTPUT_COLUMNS if k in row}
        known = (*OUTPUT_COLUMNS, *EXTRA_OUTPUTS, *META_COLUMNS)
        inputs = {k: v for k, v in row.items() if k not in known}
    outputs.update({k: row[k] for k in EXTRA_OUTPUTS if row.get(k) is not None})
    details = {
        "predicted_at": row.get("predicted_at"),
        "model_name": row.get("model_name"),
        "model_version": str(row.get("model_version")),
        "variant": row.get("variant") or config.CHAMPION_ALIAS,
        "shadow_of": row.get("shadow_of"),
        "record_id": row.get("record_id"),
        "training_digest": row.get("training_digest") or "",
        "outputs": outputs,
        "inputs": inputs,
        "log": found.where,
        "shadowed_by": [
            {"prediction_id": s["prediction_id"], "model_version": str(s.get("model_version"))}
            for s in found.shadows
        ],
    }
    if found.problem:
        return Link(PREDICTION, prediction_id, BROKEN, found.problem, details)
    return Link(PREDICTION, prediction_id, OK, "", details)


# -- the registry, the ledger and the MLflow run -------------------------------------------
def version_link(
    client: MlflowClient, name: str, version: str, via: str | None
) -> tuple[Link, ModelRef | None]:
    """The registered version, with its artifact downloaded and hashed against its tag."""
    ident = f"{name}/v{version}"
    try:
        ref = get_version(client, name, version)
    except MlflowException as error:
        return Link(MODEL_VERSION, ident, MISSING, str(error).splitlines()[0], via=via), None
    registered = client.get_model_version(name, version)
    details = {
        "name": name, "version": version, "run_id": ref.run_id, "source": ref.source,
        "registered_at": _ms(registered.creation_timestamp), "aliases": list(ref.aliases),
        "artifact_sha256": ref.artifact_sha256, "tags": dict(ref.tags),
    }  # fmt: skip
    if not ref.artifact_sha256:
        return Link(MODEL_VERSION, ident, BROKEN, "no artifact SHA-256 recorded", details, via), ref
    artifact = ref.tags.get(config.TAG_ARTIFACT_PATH, config.SKOPS_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = download_model(ref, tmp) / artifact
        except MlflowException as error:
            reason = f"artifact cannot be downloaded: {str(error).splitlines()[0]}"
            return Link(MODEL_VERSION, ident, MISSING, reason, details, via), ref
        checked = file_link(MODEL_VERSION, ident, local, ref.artifact_sha256, details, via)
    # The temporary path means nothing once deleted; say where the artifact lives instead.
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
    """Who moved `alias` to this version and when, from the ledger, before the prediction."""
    entries = ledger.entries(ref.name, alias, COMMITTED)
    moves = [e.to_dict() for e in entries if e.to_version == ref.version]
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
        return Link(PROMOTION, ident, MISSING, reason, details, via)
    return Link(PROMOTION, ident, OK, "", details, via)


def _evaluation(ref: ModelRef, settings: Settings) -> tuple[dict[str, Any] | None, str]:
    """The evaluation logged to the version's run (the source of truth), else the report dir."""
    uri = f"runs:/{ref.run_id}/evaluation/evaluation.json"
    try:
        return mlflow.artifacts.load_dict(uri), uri
    except (MlflowException, OSError):
        path = settings.reports_dir / ref.name / f"v{ref.version}" / "evaluation.json"
        return (json.loads(path.read_text()), str(path)) if path.exists() else (None, "")


def evaluation_link(ref: ModelRef, settings: Settings, via: str) -> Link:
    """The gates the version was judged by, with their values; the link checks the report is
    about this very artifact. A failed gate is shown, not judged: promoting past a gate by hand
    is a recorded human decision (see the ledger), not a broken chain."""
    ident = f"{ref.name}/v{ref.version}"
    evaluation, source = _evaluation(ref, settings)
    if evaluation is None:
        return Link(EVALUATION, ident, MISSING, "no evaluation.json in the run or reports", via=via)
    gates = evaluation.get("gates", [])
    evaluated = evaluation.get("model", {})
    details = {
        "source": source,
        "evaluated_version": evaluated.get("version"),
        "gates": gates,
        "all_passed": all(g.get("passed") for g in gates),
        "metrics": evaluation.get("report", {}).get("metrics", {}),
    }
    evaluated_sha = evaluated.get("tags", {}).get(config.TAG_ARTIFACT_SHA256)
    if evaluated_sha != ref.artifact_sha256:
        reason = f"the evaluation is of artifact {evaluated_sha}, not {ref.artifact_sha256}"
        return Link(EVALUATION, ident, BROKEN, reason, details, via)
    return Link(EVALUATION, ident, OK, "", details, via)


def run_link(client: MlflowClient, ref: ModelRef, via: str) -> tuple[Link, Any]:
    """The MLflow run that trained the version; its tags must name the same digest and file."""
    try:
        run = client.get_run(ref.run_id)
    except MlflowException as error:
        return Link(MLFLOW_RUN, ref.run_id, MISSING, str(error).splitlines()[0], via=via), None
    tags = run.data.tags
    details = {
        "status": run.info.status,
        "started_at": _ms(run.info.start_time), "ended_at": _ms(run.info.end_time),
        "experiment_id": run.info.experiment_id,
        "git_commit": tags.get(config.TAG_GIT_COMMIT), "dagster_run_id": tags.get("dagster_run_id"),
        "training_set_digest": tags.get(config.TAG_TRAINING_DIGEST),
        "params": dict(run.data.params), "metrics": dict(run.data.metrics),
        "datasets": {
            i.dataset.name: {t.key: t.value for t in i.tags} for i in run.inputs.dataset_inputs
        },
    }  # fmt: skip
    for tag, expected in (
        (config.TAG_TRAINING_DIGEST, ref.training_digest),
        (config.TAG_ARTIFACT_SHA256, ref.artifact_sha256),
    ):
        if tags.get(tag) and tags[tag] != expected:
            reason = f"the run's {tag} is {tags[tag]}, the version records {expected}"
            return Link(MLFLOW_RUN, ref.run_id, BROKEN, reason, details, via), run
    return Link(MLFLOW_RUN, ref.run_id, OK, "", details, via), run


# -- the lake ------------------------------------------------------------------------------
def _object_path(lake: Lake, kind: str, sha: str) -> Path:
    # The lake names every object by its hash (Lake.put): a day's manifest may have moved on to
    # a newer object since, but the object the training set recorded is still at this path.
    return lake.root / kind / "objects" / f"{sha}.parquet"


def training_set_link(lake: Lake, digest: str, run: Any, via: str) -> tuple[Link, dict | None]:
    """The training-set snapshot: manifest, file hash, and the split digests the run logged."""
    try:
        manifest = lake.training_manifest(digest)
    except FileNotFoundError:
        return Link(TRAINING_SET, digest, MISSING, "no manifest in the lake", via=via), None
    keys = ("days", "split_stats", "split_digests", "dagster_run_id")
    details = {k: manifest.get(k) for k in keys}
    link = file_link(TRAINING_SET, digest, manifest["path"], digest, details, via)
    logged = {} if run is None else {
        i.dataset.name.rsplit("-", 1)[-1]: {t.key: t.value for t in i.tags}.get("sha256")
        for i in run.inputs.dataset_inputs
    }  # fmt: skip
    for split, sha in (manifest.get("split_digests") or {}).items():
        if link.status == OK and split in logged and logged[split] != sha:
            reason = f"the run logged {split} split {logged[split]}, the manifest records {sha}"
            link = Link(link.kind, link.id, BROKEN, reason, link.details, via)
    return link, manifest


def feature_link(lake: Lake, day: str, sha: str, raw_sha: str | None, via: str) -> Link:
    current = lake.feature_entry(day) or {}
    details = {"day": day, "current": current.get("sha256") == sha}
    link = file_link(FEATURES, f"{day}/{sha}", _object_path(lake, FEATURES, sha), sha, details, via)
    derived_from = current.get("raw_sha256") if details["current"] else None
    if link.status == OK and raw_sha and derived_from and derived_from != raw_sha:
        reason = f"features of {day} were derived from raw {derived_from}, not {raw_sha}"
        return Link(link.kind, link.id, BROKEN, reason, link.details, via)
    return link


def raw_link(lake: Lake, day: str, sha: str, via: str) -> Link:
    """One raw batch: its file, source URI and validation result, as recorded at ingestion."""
    record = lake.batch(day)
    if record is not None and record.sha256 == sha:
        path, report = record.path, record.report or {}
        details = {
            "day": day, "source": record.source, "rows": record.rows, "status": record.status,
            "ingested_at": record.ingested_at, "validation": report.get("summary", ""),
            "validation_passed": report.get("passed"), "current": True,
        }  # fmt: skip
    else:
        path = str(_object_path(lake, "raw", sha))
        details = {"day": day, "current": False, "current_sha256": record and record.sha256}
    link = file_link(RAW_BATCH, f"{day}/{sha}", path, sha, details, via)
    if link.status == OK and details.get("status", "accepted") != "accepted":
        reason = f"the batch of {day} was {details['status']}, yet the training set used it"
        return Link(link.kind, link.id, BROKEN, reason, link.details, via)
    return link


def data_links(lake: Lake, digest: str, run: Any, via: str) -> list[Link]:
    """Training set, then per day its feature partition and the raw batch beneath it."""
    training, manifest = training_set_link(lake, digest, run, via)
    links = [training]
    if manifest is None:
        return links
    features = manifest.get("feature_partitions") or {}
    raws = manifest.get("raw_batches") or {}
    for day in manifest.get("days", sorted(raws)):
        parent = training.key
        if day in features:
            links.append(feature_link(lake, day, features[day], raws.get(day), training.key))
            parent = links[-1].key
        if day in raws:
            links.append(raw_link(lake, day, raws[day], parent))
        else:
            links.append(Link(RAW_BATCH, day, MISSING, "no raw batch recorded", via=parent))
    return links


# -- the whole walk ------------------------------------------------------------------------
def version_chain(
    client: MlflowClient, settings: Settings, name: str, version: str, via: str | None = None
) -> tuple[list[Link], ModelRef | None]:
    """Model version, its evaluation, its MLflow run and all its data: shared with lineage."""
    model, ref = version_link(client, name, version, via)
    if ref is None:
        return [model], None
    run_, run = run_link(client, ref, model.key)
    links = [model, evaluation_link(ref, settings, model.key), run_]
    lake = Lake(settings.lake_dir, settings.quarantine_dir, name)
    if not ref.training_digest:
        reason = "the version records no training set digest"
        links.append(Link(TRAINING_SET, "?", MISSING, reason, via=run_.key))
        return links, ref
    return links + data_links(lake, ref.training_digest, run, run_.key), ref


def trace_prediction(
    prediction_id: str, settings: Settings, client: MlflowClient | None = None
) -> Trace:
    """Every link from `prediction_id` to the raw batch files, each one checked."""
    found = find_prediction(settings, prediction_id)
    roles = column_roles(settings.prediction_log_dir, found.row["model_name"]) if found.row else {}
    prediction = prediction_link(prediction_id, found, roles)
    if found.row is None:
        return Trace(prediction_id, (prediction,))
    client = client or configure_mlflow(settings)
    name, version = prediction.details["model_name"], prediction.details["model_version"]
    chain, ref = version_chain(client, settings, name, version, prediction.key)
    if ref is None:
        return Trace(prediction_id, (prediction, *chain))
    promotion = promotion_link(
        Ledger.for_settings(settings), ref, prediction.details["variant"],
        prediction.details["predicted_at"], chain[0].key,
    )  # fmt: skip
    links = (answered_by_link(prediction, ref), chain[0], promotion, *chain[1:])
    return Trace(prediction_id, links)
