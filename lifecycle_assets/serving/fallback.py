"""Serve the last good version when the alias holder cannot be verified.

The registry may hold a `champion` the service cannot trust: a tampered artifact, a version a
crash left half-registered (no `artifact_sha256` tag, or marked `lifecycle.incomplete`), one that
does not load. Refusing to start would take every model down because of one bad entry; serving it
would serve something unverified. So the service serves the newest version the alias ledger
shows as an earlier holder of that alias that still verifies, and says so: `/metadata`, `/readyz`
and the `lifecycle_serving_degraded` gauge report the degradation until the alias moves to a
version that verifies.

`verify_and_load` is the one place the service decides whether a version may serve, with the
rule every alias move applies (`registry/verify.py`): the tags first (`refusal`: complete
registration, not marked incomplete), then the download checked against its SHA-256 and loaded
on the allow-list; a compiled form that does not attach is checked with `verify_version`, so a
tampered compiled file refuses the version instead of quietly falling back to scikit-learn.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.artifacts import IntegrityError, UntrustedArtifactError
from lifecycle_assets.registry.ledger import COMMITTED, AliasError, Ledger, utc_now
from lifecycle_assets.registry.promotions import PLATFORM_KINDS, promotion
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.verify import (
    has_compiled,
    model_refusal,
    refusal,
    verify_version,
)
from lifecycle_assets.serving.in_place import registry_reader
from lifecycle_assets.serving.model_source import (
    ModelSourceError,
    ServedModel,
    served_from_registry,
)

logger = logging.getLogger(__name__)


class VersionRefused(RuntimeError):
    """A version that may not serve. `reasons` are safe to show anyone (no paths, no SQL);
    `detail` carries the full error for the log and the admin endpoints."""

    def __init__(self, name: str, version: str, reasons: list[str], detail: str = "") -> None:
        self.name, self.version, self.reasons = name, version, reasons
        self.detail = detail or "; ".join(reasons)
        super().__init__(f"{name} v{version} cannot serve: {'; '.join(reasons)}")


def public_reason(error: BaseException) -> str:
    """What an unauthenticated caller may read about a failure: its kind, never its text
    (messages of MLflow, SQLAlchemy and skops carry temp paths and SQL)."""
    if isinstance(error, VersionRefused):
        return "; ".join(error.reasons)
    if isinstance(error, IntegrityError):
        return "IntegrityError: the artifact does not match its registered SHA-256"
    if isinstance(error, UntrustedArtifactError):
        return "UntrustedArtifactError: the artifact holds types outside the allow-list"
    return f"{type(error).__name__} (details in the service log and /admin/status)"


def tag_problems(ref: ModelRef) -> list[str]:
    """What the registry's tags alone say against serving `ref` (before any download)."""
    problems = [reason] if (reason := refusal(ref.tags) or model_refusal(ref)) else []
    if ref.tags.get(config.TAG_RETIRED, "").strip().lower() == "true":
        problems.append("the version is retired")
    return problems


def verify_and_load(ref: ModelRef) -> ServedModel:
    """The version downloaded, SHA-256 checked and loaded on the allow-list, or VersionRefused."""
    problems = tag_problems(ref)
    if problems:
        raise VersionRefused(ref.name, ref.version, problems)
    try:
        served = served_from_registry(ref)
    except Exception as error:
        detail = f"{type(error).__name__}: {error}"
        raise VersionRefused(ref.name, ref.version, [public_reason(error)], detail) from error
    if (spec_name := served.loaded.spec.name) != ref.name:
        # The tag can be edited; the spec written in the model's own files says it too.
        reason = f"it was trained for model {spec_name!r}, not {ref.name!r}"
        raise VersionRefused(ref.name, ref.version, [reason])
    if has_compiled(ref.tags) and served.compiled is None:
        # A compiled form turned down by choice (`LIFECYCLE_SCORER=sklearn`) leaves scikit-learn
        # serving; a compiled file that does not match its registered SHA-256 (or is gone)
        # refuses the version, as it refuses an alias move.
        reader = registry_reader(Settings.from_env())
        verdict = verify_version(_Reading(reader), ref.name, ref.version, ref=ref)
        if not verdict.ok:
            raise VersionRefused(ref.name, ref.version, verdict.reasons)
    return served


class Unpromoted(VersionRefused):
    """Refused (among other reasons, maybe) because the ledger does not name the version: it
    may serve once `lifecycle promote` records it, without the alias moving."""


class PromotionPending(RuntimeError):
    """The registry shows a move whose ledger entry is still PENDING: look again shortly."""


# What anyone may read when the alias ledger cannot be read; the log says where it is and why.
LEDGER_UNREADABLE = "the alias ledger cannot be read (details in the service log)"


def ledger_unreadable(ledger: Ledger, error: Exception) -> str:
    """Log that `ledger` cannot be read, naming it (any kind: `where`) and the error; returns
    the public line. Every reader of the ledger in the service says it this one way."""
    logger.error("the alias ledger %s cannot be read: %s", ledger.where, error)
    return LEDGER_UNREADABLE


def promotion_problems(
    ledger: Ledger, name: str, alias: str, version: str, *, wait_seconds: float = 0.0
) -> list[str]:
    """[] when the ledger shows `alias` -> `version` as the platform's last move of it, else
    why not (`registry/promotions.py`); PromotionPending while that move is in flight, after
    waiting up to `wait_seconds` for it to be committed (a move commits milliseconds after
    its registry write, which a webhook may announce first).

    A ledger that cannot be read refuses the version: nothing then says it was promoted.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            found = promotion(ledger, name, alias, version)
        except Exception as error:
            return [ledger_unreadable(ledger, error)]
        if found.ok:
            return []
        if not found.pending:
            return [found.reason]
        if time.monotonic() > deadline:
            raise PromotionPending(found.reason)
        time.sleep(0.05)


def verify_promoted(
    ref: ModelRef, alias: str, ledger: Ledger, *, wait_seconds: float = 0.0
) -> ServedModel:
    """`verify_and_load`, and the ledger must show `ref` as the platform's `alias`: a version
    set in MLflow directly (its UI, its API) is refused with every reason, never served."""
    problems = promotion_problems(ledger, ref.name, alias, ref.version, wait_seconds=wait_seconds)
    try:
        served = verify_and_load(ref)
    except VersionRefused as refused:
        if not problems:
            raise
        detail = "; ".join([refused.detail, *problems])
        raise Unpromoted(ref.name, ref.version, [*refused.reasons, *problems], detail) from None
    if problems:
        raise Unpromoted(ref.name, ref.version, problems)
    return served


@dataclass(frozen=True)
class _Reading:
    """What `verify_version` asks of a client when the service reads the registry directly:
    its `reader` (`registry.reader.reader_of`); files are hashed where they are stored."""

    reader: Any


def earlier_holders(ledger: Ledger, name: str, alias: str, exclude: Iterable[str]) -> list[str]:
    """Versions that held `alias` according to the ledger, most recent first, without those in
    `exclude` and without versions a rollback moved away from (known bad). Only the
    platform's own moves count: an `external` entry records a holder nobody promoted."""
    entries = [e for e in ledger.entries(name, alias, COMMITTED) if e.kind in PLATFORM_KINDS]
    rolled_back = {e.from_version for e in entries if e.kind == "rollback" and e.from_version}
    skip = set(exclude) | rolled_back
    seen: list[str] = []
    for entry in reversed(entries):
        version = entry.to_version
        if version is not None and version not in skip and version not in seen:
            seen.append(version)
    return seen


@dataclass(frozen=True)
class Degradation:
    """The alias holder could not serve; `serving` is the earlier good version that does."""

    alias: str
    holder: str | None
    serving: str
    reasons: list[str]
    detail: str
    since: str = field(default_factory=utc_now)
    # Refused (also) because the ledger does not name the holder: `lifecycle promote` of it
    # can end the degradation without the alias moving.
    unpromoted: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "registry_holder": self.holder,
            "serving": self.serving,
            "reasons": list(self.reasons),
            "since": self.since,
        }

    def admin(self) -> dict[str, Any]:
        return {**self.public(), "detail": self.detail}


@dataclass(frozen=True)
class Choice:
    served: ServedModel
    degradation: Degradation | None


# How long start-up waits for a move it sees in flight (PENDING) to be committed: a move
# takes milliseconds; one whose process died stays PENDING until the next alias command.
# Longer than the watcher's per-poll wait: start-up has no next poll, a holder still
# PENDING after it is refused.
STARTUP_PENDING_WAIT_SECONDS = 5.0


def _promoted_holder(holder: ModelRef, alias: str, ledger: Ledger) -> ServedModel:
    """`verify_promoted`, waiting a moment for a move in flight; after that it is refused."""
    try:
        return verify_promoted(holder, alias, ledger, wait_seconds=STARTUP_PENDING_WAIT_SECONDS)
    except PromotionPending as pending:
        reason = f"{pending} and its ledger entry stays PENDING"
        raise Unpromoted(holder.name, holder.version, [reason]) from None


class NothingToServe(ModelSourceError):
    """Neither the alias holder nor any earlier holder verifies: a fatal start-up error."""


def choose(
    name: str,
    alias: str,
    holder: ModelRef,
    ledger: Ledger,
    fetch: Any,
    *,
    also_refused: Iterable[str] = (),
) -> Choice:
    """Serve `holder` if the ledger promoted it and it verifies, else the most recent earlier
    holder (of the ledger, the platform's own moves) that verifies.

    `fetch(version) -> ModelRef` reads a version's current tags from the registry.
    """
    try:
        return Choice(_promoted_holder(holder, alias, ledger), None)
    except VersionRefused as refused:
        first = refused
    logger.error("%s; looking for the last good version in the ledger", first.detail)
    tried = [holder.version, *also_refused]
    try:
        candidates = earlier_holders(ledger, name, alias, tried)
    except (sqlite3.Error, AliasError) as error:
        ledger_unreadable(ledger, error)
        candidates = []
    for version in candidates:
        try:
            served = verify_and_load(fetch(version))
        except VersionRefused as error:
            logger.error("earlier %s v%s cannot serve either: %s", name, version, error.detail)
            continue
        except Exception as error:  # the version may be gone from the registry
            logger.error("earlier %s v%s cannot be read: %s", name, version, error)
            continue
        degradation = Degradation(
            alias, holder.version, version, first.reasons, f"v{holder.version}: {first.detail}",
            unpromoted=isinstance(first, Unpromoted),
        )  # fmt: skip
        logger.error(
            "DEGRADED: %s `%s` is v%s, which cannot serve (%s); serving v%s instead",
            name, alias, holder.version, "; ".join(first.reasons), version,
        )  # fmt: skip
        return Choice(served, degradation)
    raise NothingToServe(
        f"{name} `{alias}` v{holder.version} cannot serve ({'; '.join(first.reasons)}) and "
        f"the ledger shows no earlier `{alias}` that verifies"
    )
