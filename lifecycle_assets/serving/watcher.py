"""Follow the registry: when an alias the service serves moves, load, verify, smoke, then swap.

A daemon thread polls the registered model (its aliases and tags, read-only through
`registry/reader.py`: two indexed queries on a SQLite store, no MLflow import) every few seconds,
off the request path. A moved alias is loaded in that thread, checked against
its recorded SHA-256 (`fallback.verify_and_load`), asked for a smoke prediction, and only then
published as a new `ModelSet`; anything failing on the way is refused: the old model (the last
good one) keeps serving, and the refusal is logged, listed in `/metadata` and counted in
`/metrics`. The canary answers the share the ledger recorded (`canary_weight.py`), whatever
the registry's `canary_weight` tag says. A refused `champion` also marks the model degraded
(registry and service disagree) until the alias moves to a version that serves; a refused
`canary` or `shadow`, or one whose alias the registry lost while the ledger names it, is a
lost role (`lost_roles.py`): the champion answers its share, and `/readyz` says so. A refused
version is not retried on every poll, only once its alias has moved away and back (or on
`POST /admin/reload` with `retry`). A champion loaded before `bento_service` tagged it with
its Bento is re-read for that tag alone, a bounded number of polls, so `/metadata` names its
Bento.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.registry.ledger import Ledger, utc_now
from lifecycle_assets.registry.promotions import find_lost_holder
from lifecycle_assets.registry.reader import RegistryReader
from lifecycle_assets.serving.canary_weight import CanaryWeight
from lifecycle_assets.serving.fallback import (
    Degradation,
    PromotionPending,
    Unpromoted,
    VersionRefused,
    promotion_problems,
    verify_promoted,
)
from lifecycle_assets.serving.in_place import existing_version
from lifecycle_assets.serving.lost_roles import LOST_ROLES, LostRoles
from lifecycle_assets.serving.metrics import PredictionMetrics
from lifecycle_assets.serving.model_set import CANARY, CHAMPION, ROLES, SHADOW, ModelSet, smoke_test
from lifecycle_assets.serving.model_source import ServedModel

logger = logging.getLogger(__name__)

ALIASES = {
    CHAMPION: config.CHAMPION_ALIAS,
    CANARY: config.CANARY_ALIAS,
    SHADOW: config.SHADOW_ALIAS,
}
# How long a poll waits for a move it sees in flight (PENDING in the ledger) to be committed.
# Shorter than start-up's wait: a move still PENDING is simply retried on the next poll.
POLL_PENDING_WAIT_SECONDS = 1.0
# Refusals kept for /metadata; older ones are in the service log.
MAX_REFUSALS = 20
# Polls (2 s each by default) a champion loaded without a `bento_tag` tag is re-read for it.
BENTO_TAG_POLLS = 300


@dataclass(frozen=True)
class Refusal:
    """`reason` is public (no paths, no SQL); `detail` only goes to the log and admin status."""

    role: str
    version: str
    reason: str
    time: str
    detail: str = ""

    def public(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if k != "detail"}


class RegistryWatcher:
    """Polls the aliases of one registered model and publishes verified `ModelSet`s.

    `registry()` returns a reader for the calling thread (`in_place.registry_reader`).
    """

    def __init__(
        self,
        registry: Callable[[], RegistryReader],
        name: str,
        current: Callable[[], ModelSet],
        publish: Callable[[ModelSet], None],
        metrics: PredictionMetrics,
        poll_seconds: float,
        ledger: Ledger,
    ) -> None:
        self.registry, self.name, self.ledger = registry, name, ledger
        self.current, self.publish = current, publish
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.refused: list[Refusal] = []
        self.canary_weight = CanaryWeight(ledger, name)
        self.last_swap: dict[str, Any] | None = None
        self.last_poll: str | None = None
        self.last_poll_error: str | None = None
        self.last_poll_error_detail: str | None = None
        # What each alias pointed at when last acted on: a refused version is not retried until
        # its alias moves. Starts from what is served, so the champion loaded at start-up counts
        # (or, when start-up fell back to a last good version, the holder it refused).
        self._seen: dict[str, str | None] = {
            role: None if (m := current().get(role)) is None else m.ref.version for role in ROLES
        }
        self.degradation: Degradation | None = current().champion.degradation
        if self.degradation is not None:
            self._seen[CHAMPION] = self.degradation.holder
            self.refused.append(
                Refusal(
                    CHAMPION,
                    str(self.degradation.holder),
                    "; ".join(self.degradation.reasons),
                    self.degradation.since,
                    self.degradation.detail,
                )
            )
        self.metrics.degraded.labels(name).set(0.0 if self.degradation is None else 1.0)
        self._bento_tag_polls: dict[str, int] = {}
        # A canary or shadow the registry names that does not serve (`lost_roles.py`); the
        # roles not served whose absence is not yet checked against the ledger (at start-up,
        # an alias the registry lost before the service started).
        self.lost = LostRoles(name, metrics, ledger)
        self._unexplained = {role for role in LOST_ROLES if current().get(role) is None}
        # Per role, the version last refused because the ledger does not name it.
        self._unpromoted: dict[str, str] = {}
        if self.degradation is not None and self.degradation.unpromoted:
            self._unpromoted[CHAMPION] = str(self.degradation.holder)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="registry-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception as error:
                # The registry may be briefly unreachable: keep serving, say so, try again.
                logger.exception("polling the registry for %s failed", self.name)
                self.last_poll_error = f"{type(error).__name__} (details in the service log)"
                self.last_poll_error_detail = f"{type(error).__name__}: {error}"

    def poll(self, *, retry_refused: bool = False) -> ModelSet:
        """Read the aliases once and swap whatever moved; returns the model set now served."""
        with self._lock:
            reader = self.registry()
            state = reader.model_state(self.name)
            if state is None:
                raise LookupError(f"{self.name} is no longer registered")
            aliases, tags = state.aliases, state.tags
            self.last_poll, self.last_poll_error = utc_now(), None
            self.last_poll_error_detail = None
            models = self.current()
            changes: dict[str, Any] = {}
            for role, alias in ALIASES.items():
                target = aliases.get(alias)
                if target == self._seen[role] and not (
                    self._is_refused(role) and (retry_refused or self._now_promoted(role))
                ):
                    if target is None and role in self._unexplained:
                        self._explain_absence(reader, role, models)
                    continue
                served = models.get(role)
                if target is None:
                    self._seen[role] = target
                    if role == CHAMPION:
                        logger.warning("%s lost `%s`; still serving it", self.name, alias)
                    else:
                        changes[role] = None
                        self._explain_absence(reader, role, models)
                elif served is None or served.ref.version != target:
                    try:
                        loaded = self._load(reader, role, target, models)
                    except PromotionPending:
                        continue  # its ledger entry is being committed: the next poll
                    self._seen[role] = target
                    if loaded is not None:
                        changes[role] = loaded
                    if role == CHAMPION:
                        self._set_degradation(None if loaded else target, models)
                    elif loaded is None:
                        refusal = self.refused[-1]
                        self.lost.lose(role, target, refusal.reason, models.champion.ref.version)
                    else:
                        self.lost.found(role)
                else:
                    self._seen[role] = target
                    if role == CHAMPION:
                        # The alias came back to the version served: registry and service agree.
                        self._set_degradation(None, models)
                    else:
                        self.lost.found(role)
            tagged = None if CHAMPION in changes else self._with_its_bento(reader, models.champion)
            if tagged is not None:
                models = models.replace(champion=tagged)
                self.publish(models)  # the same version, now naming its Bento: not a swap
            canary = changes.get(CANARY, models.canary)
            weight = self.canary_weight.weight(
                None if canary is None else canary.ref.version, tags.get(config.TAG_CANARY_WEIGHT)
            )
            if weight != models.canary_weight:
                changes["canary_weight"] = weight
            if changes:
                models = models.replace(**changes)
                self.publish(models)
                self._record_swap(changes, models)
            return models

    def _with_its_bento(self, reader: RegistryReader, served: ServedModel) -> ServedModel | None:
        """The champion with the `bento_tag` tag set since it was loaded, else None.

        `bento_service` builds the Bento after the promotion the service follows, so a champion
        loaded at once lacks the tag. Re-read (one registry call per poll) only while it lacks
        it, and for at most `BENTO_TAG_POLLS` polls per version (a hand-promoted version may
        never get a Bento). Only that tag is taken: the rest is what was verified at load.
        """
        ref = served.ref
        polls = self._bento_tag_polls.get(ref.version, 0)
        if config.TAG_BENTO_TAG in ref.tags or polls >= BENTO_TAG_POLLS:
            return None
        self._bento_tag_polls[ref.version] = polls + 1
        current = reader.version(self.name, ref.version)
        bento_tag = None if current is None else current.tags.get(config.TAG_BENTO_TAG)
        if bento_tag is None:
            return None
        tagged = dataclasses.replace(ref, tags={**ref.tags, config.TAG_BENTO_TAG: bento_tag})
        return dataclasses.replace(served, loaded=dataclasses.replace(served.loaded, ref=tagged))

    def _is_refused(self, role: str) -> bool:
        return any(r.role == role and r.version == self._seen[role] for r in self.refused)

    def _if_alias_moved_on(self, reader: RegistryReader, alias: str, version: str) -> None:
        """PromotionPending when the registry no longer names `version`: read just before a
        second move, the ledger already has that move, and the next poll follows it; only a
        holder still named after the ledger was read is refused."""
        state = reader.model_state(self.name)
        if state is None or state.aliases.get(alias) != version:
            raise PromotionPending(f"`{alias}` moved on from v{version}")

    def _now_promoted(self, role: str) -> bool:
        """Whether the ledger now names a holder refused for want of its record (`lifecycle
        promote` adopted a version set in MLflow directly): the alias did not move, but the
        version may serve now. One ledger read per poll, only while such a refusal stands."""
        version = self._seen[role]
        if version is None or self._unpromoted.get(role) != version:
            return False
        try:
            return not promotion_problems(self.ledger, self.name, ALIASES[role], version)
        except PromotionPending:
            return False

    def _load(
        self, reader: RegistryReader, role: str, version: str, models: ModelSet
    ) -> ServedModel | None:
        """The verified, smoke-tested version the ledger promoted, or None after recording why
        it was refused; PromotionPending while its move is being committed."""
        alias = ALIASES[role]
        roles = (models.champion, models.canary, models.shadow)
        already = next((s for s in roles if s is not None and s.ref.version == version), None)
        try:
            if already is not None:
                # Already loaded and verified for another role; the ledger must still say so.
                problems = promotion_problems(
                    self.ledger, self.name, alias, version, wait_seconds=POLL_PENDING_WAIT_SECONDS
                )
                if problems:
                    raise Unpromoted(self.name, version, problems)
                return already
            ref = existing_version(reader, self.name, version)
            candidate = verify_promoted(
                ref, alias, self.ledger, wait_seconds=POLL_PENDING_WAIT_SECONDS
            )
            # A new champion brings its own spec (requests are validated against it); the other
            # roles must answer the rows the champion's spec accepts.
            spec = candidate.loaded.spec if role == CHAMPION else models.champion.loaded.spec
            smoke_test(candidate, spec)
        except PromotionPending:
            raise
        except VersionRefused as error:
            if isinstance(error, Unpromoted):
                self._if_alias_moved_on(reader, alias, version)
                self._unpromoted[role] = version
            return self._refuse(role, version, "; ".join(error.reasons), error.detail)
        except Exception as error:
            # Smoke-test messages are built here from the spec: no paths, safe to show.
            detail = f"{type(error).__name__}: {error}"
            public = detail if isinstance(error, ValueError) else type(error).__name__
            return self._refuse(role, version, public, detail)
        return candidate

    def _refuse(self, role: str, version: str, reason: str, detail: str) -> None:
        logger.error("refused %s v%s as %s: %s", self.name, version, role, detail)
        refusal = Refusal(role, version, reason, utc_now(), detail)
        self.refused = [*self.refused, refusal][-MAX_REFUSALS:]
        self.metrics.swap_failures.labels(self.name, role).inc()

    def _explain_absence(self, reader: RegistryReader, role: str, models: ModelSet) -> None:
        """The registry names no holder of `role`: lost when the ledger still names one (the
        version deleted, the alias removed in MLflow), else simply none (`--clear`). A ledger
        that cannot be read is asked again on the next poll."""
        try:
            holder = find_lost_holder(self.ledger, reader, self.name, ALIASES[role])
        except Exception as error:
            logger.error("cannot tell whether %s `%s` was lost: %s", self.name, role, error)
            self._unexplained.add(role)
            return
        self._unexplained.discard(role)
        if holder is None:
            self.lost.found(role)
        else:
            self.lost.lose(role, holder.version, holder.reason, models.champion.ref.version)

    def _set_degradation(self, refused_holder: str | None, models: ModelSet) -> None:
        """Degraded while the champion alias names a version that could not serve."""
        if refused_holder is None:
            if self.degradation is not None:
                logger.warning("%s no longer degraded", self.name)
            self.degradation = None
        else:
            refusal = self.refused[-1]
            self.degradation = Degradation(
                ALIASES[CHAMPION],
                refused_holder,
                models.champion.ref.version,
                [refusal.reason],
                refusal.detail,
            )
            logger.error(
                "DEGRADED: %s `%s` is v%s, which cannot serve; still serving v%s",
                self.name, ALIASES[CHAMPION], refused_holder, models.champion.ref.version,
            )  # fmt: skip
        self.metrics.degraded.labels(self.name).set(0.0 if self.degradation is None else 1.0)

    def _record_swap(self, changes: dict[str, Any], models: ModelSet) -> None:
        roles = {}
        for role in ROLES:
            if role in changes:
                roles[role] = None if changes[role] is None else changes[role].ref.version
                self.metrics.swaps.labels(self.name, role).inc()
        self.last_swap = {"time": utc_now(), "roles": roles, "canary_weight": models.canary_weight}
        logger.info("%s now serves %s", self.name, models.describe())

    def status(self, *, admin: bool = False) -> dict[str, Any]:
        """What `/metadata` shows; `admin` adds the full error texts (paths, SQL) of failures."""
        degradation = self.degradation
        status = {
            "follows_registry": True,
            "poll_seconds": self.poll_seconds,
            "last_poll": self.last_poll,
            "last_poll_error": self.last_poll_error,
            "last_swap": self.last_swap,
            "refused": [asdict(r) if admin else r.public() for r in self.refused],
            # The registry's canary weight differs from the ledger's, which is the one routed by.
            "canary_weight_problem": self.canary_weight.problem,
            "degraded": None
            if degradation is None
            else (degradation.admin() if admin else degradation.public()),
            # The canary or shadow the registry names that does not serve, and why.
            "lost_roles": self.lost.public(),
        }
        if admin:
            status["last_poll_error_detail"] = self.last_poll_error_detail
        return status
