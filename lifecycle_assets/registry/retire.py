"""Retire a model version: refuse while anything uses it, list what refers to it, archive it.

A retired version stays in the registry so every prediction, Bento and ledger entry that names
it can still be traced; it is tagged `retired=true` (never an alias or rollback target again,
see `aliases._target`), its model directory is copied to the archive with a SHA-256 manifest,
and the retirement is a ledger entry of kind `retire`.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upath import UPath

from lifecycle_assets import config, storage
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.alias_reconcile import existing_version, is_retired
from lifecycle_assets.registry.aliases import _live_aliases, _operation
from lifecycle_assets.registry.artifacts import IntegrityError, sha256_file
from lifecycle_assets.registry.ledger import (
    ABORTED,
    COMMITTED,
    RETIRE_ALIAS,
    AliasError,
    Ledger,
    LedgerEntry,
    utc_now,
)
from lifecycle_assets.registry.refs import ModelRef, get_version
from lifecycle_assets.registry.service_probe import ServiceProbe, probe_service

if TYPE_CHECKING:
    from mlflow import MlflowClient


class RetireRefused(AliasError):
    """The version is still in use; the message names every use."""


@dataclass(frozen=True)
class Dependents:
    """Everything that refers to one version."""

    aliases: tuple[str, ...]
    bento_models: tuple[str, ...]
    bentos: tuple[str, ...]
    run_id: str
    ledger_entries: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Retirement:
    """The outcome of `retire`."""

    ref: ModelRef
    dependents: Dependents
    service: ServiceProbe
    archive_dir: Path
    manifest: dict[str, Any]


def _bento_dependents(name: str, version: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """BentoML models whose metadata carries the version, and the Bentos that bundle them."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        stored = bentoml.models.list(name)
    except NotFound:  # BentoML's way of saying: no model of that name in the store
        stored = []
    models = {
        str(model.tag)
        for model in stored
        if str((model.info.metadata or {}).get("model_version", "")) == version
    }
    bentos = set()
    if models:
        for bento in bentoml.list():
            carried = {str(info.tag) for info in bento.info.all_models}
            if carried & models:
                bentos.add(str(bento.tag))
    return tuple(sorted(models)), tuple(sorted(bentos))


def dependents(
    client: MlflowClient, name: str, version: str, *, ledger: Ledger | None = None
) -> Dependents:
    """Aliases, BentoML models, Bentos, the MLflow run and ledger entries of one version."""
    ref = existing_version(client, name, str(version))  # a missing one: the alias commands' words
    return _dependents(ref, _live_aliases(client, name), ledger or Ledger.default())


def _dependents(ref: ModelRef, live: dict[str, str], ledger: Ledger) -> Dependents:
    """`dependents` of a version already read, given the model's aliases (`live`)."""
    aliases = tuple(sorted(a for a, v in live.items() if v == ref.version))
    bento_models, bentos = _bento_dependents(ref.name, ref.version)
    entries = tuple(
        {k: e.to_dict()[k] for k in ("time", "alias", "kind", "from_version", "to_version")}
        for e in ledger.entries(ref.name)
        if ref.version in (e.from_version, e.to_version)
    )
    return Dependents(aliases, bento_models, bentos, ref.run_id, entries)


def archive_version(ref: ModelRef, archive_root: storage.Location) -> tuple[UPath, dict[str, Any]]:
    """Copy the version's model directory to `<root>/<model>/v<version>/` with a manifest.

    The registered SHA-256 is checked on the copy: an archive of the wrong bytes is refused.
    """
    from lifecycle_assets.registry.models import download_model

    target = storage.path(archive_root) / ref.name / f"v{ref.version}"  # local or S3
    if storage.exists(target):
        target.fs.rm(target.path, recursive=True)
    with tempfile.TemporaryDirectory() as tmp:
        downloaded = Path(download_model(ref, tmp))
        names = [p.relative_to(downloaded) for p in sorted(downloaded.rglob("*")) if p.is_file()]
        for name in names:
            storage.write_atomic(target.joinpath(*name.parts), (downloaded / name).read_bytes())
    # Hashed as stored: the copy is what a restore would read.
    files = {name.as_posix(): sha256_file(target.joinpath(*name.parts)) for name in names}
    skops_sha = files.get(config.SKOPS_FILE, "")
    if ref.artifact_sha256 and skops_sha != ref.artifact_sha256:
        raise IntegrityError(
            f"{ref.name} v{ref.version}: archived {config.SKOPS_FILE} has SHA-256 {skops_sha}, "
            f"registered {ref.artifact_sha256}"
        )
    manifest = {
        "model": ref.name,
        "version": ref.version,
        "run_id": ref.run_id,
        "source": ref.source,
        "artifact_sha256": skops_sha,
        "files": files,
        "archived_at": utc_now(),
    }
    storage.write_json(target / config.ARCHIVE_MANIFEST, manifest, sort_keys=True)
    return target, manifest


def retire(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    reason: str,
    actor: str,
    dagster_run_id: str = "",
    service_url: str | None = config.DEFAULT_SERVICE_URL,
    probe_timeout: float = config.SERVICE_PROBE_TIMEOUT_SECONDS,
    settings: Settings | None = None,
    ledger: Ledger | None = None,
) -> Retirement:
    """Archive `version` for good; RetireRefused while an alias or the service uses it.

    Runs under the model's alias lock, so no alias can move to the version between the check
    and the retired tag. The tag is the last step: a process killed before it leaves a PENDING
    ledger entry that the next operation settles as ABORTED.
    """
    settings = settings or Settings.from_env()
    ledger, version = ledger or Ledger.for_settings(settings), str(version)
    with _operation(client, name, ledger) as live:
        ref = existing_version(client, name, version)
        if is_retired(ref):
            raise AliasError(f"{name} v{version} is already retired")
        found = _dependents(ref, live, ledger)
        probe = (
            probe_service(service_url, name, probe_timeout)
            if service_url
            else ServiceProbe("", False, (), "no service URL given")
        )
        uses = [f"alias `{alias}`" for alias in found.aliases]
        if version in probe.versions:
            uses.append(f"the service at {probe.url}")
        if uses:
            raise RetireRefused(
                f"{name} v{version} is still in use by {', '.join(uses)}; move those first"
            )
        entry = ledger.append(
            LedgerEntry.new(
                name, RETIRE_ALIAS, version, None, kind="retire", reason=reason,
                actor=actor, dagster_run_id=dagster_run_id,
            )
        )  # fmt: skip
        try:
            archive_dir, manifest = archive_version(ref, settings.archive_dir)
            tags = {
                config.TAG_RETIRED_AT: entry.time,
                config.TAG_RETIRED_BY: actor,
                config.TAG_RETIRED_REASON: reason,
                config.TAG_ARCHIVE_PATH: str(archive_dir),
                config.TAG_RETIRED: "true",  # last: it is what marks the retirement as done
            }
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, value)
        except Exception:
            ledger.settle(entry.operation_id, ABORTED, "the archive or the tags failed")
            raise
        ledger.settle(entry.operation_id, COMMITTED, f"archived to {archive_dir}")
    return Retirement(get_version(client, name, version), found, probe, archive_dir, manifest)
