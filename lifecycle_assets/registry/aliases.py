"""Move registry aliases (`champion` and friends); the only module that writes them.

Every change runs under the model's cross-process lock and in three recorded steps: a PENDING
ledger entry, the registry write, then COMMITTED. `reconcile` (`alias_reconcile`) settles
whatever a killed process left PENDING by asking the registry (the source of truth) what
actually happened, and records changes made behind the ledger's back, so the ledger and the
registry never disagree.
Callers may pass `expected_version` to refuse a move when the alias changed since they looked
(optimistic concurrency): two concurrent promotions cannot both win. A version must pass
`verify_version` (artifact present, SHA-256 matching, loadable) before any alias points to it,
so the registry never names a version the service would refuse.

The move is also mirrored on the model version as tags (who, when, why, which Dagster run) so
the registry alone answers "who promoted this version". The alias, those tags and any model tag
that goes with the move (a canary's weight) are one `RegistryChange`: the SQLite writer applies
it in one transaction, MlflowClient call by call. Which alias may point where is
`alias_rules`: a champion moved to the canary's or the shadow's version ends it in that same
change, recorded in the ledger beside the move. Reads go through `reader_of(client)` and writes
through `writer_of(client)`, so a move on the embedded SQLite file imports no MLflow.
"""

from __future__ import annotations

import contextlib
import enum
import functools
from collections.abc import Iterator, Mapping
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.crash import crash_point
from lifecycle_assets.registry.alias_reconcile import (
    existing_version,
    is_retired,
    reconcile_locked,
    stamp,
)
from lifecycle_assets.registry.alias_rules import AliasMove, check_move, ended_by, known
from lifecycle_assets.registry.changes import RegistryChange, writer_of
from lifecycle_assets.registry.ledger import (
    COMMITTED,
    AliasError,
    Ledger,
    LedgerEntry,
    previous_holder,
    version_label,
)
from lifecycle_assets.registry.promotions import promoted_version, promotion_in, weight_in
from lifecycle_assets.registry.reader import reader_of
from lifecycle_assets.registry.recovery import recover_registry
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.verify import verify_version


class _Unchecked(enum.Enum):
    ANY = "any"


# Default of `expected_version`: move whoever holds the alias. None means "expect it unset".
ANY_VERSION = _Unchecked.ANY
Expected = str | None | _Unchecked
# How a rollback's reason names the earlier holders it skipped (they no longer verify); the CLI
# repeats such a reason as a note.
PASSED_OVER = " (passed over "
# A registered-model tag to set with a move (a value), or to delete (None).
ModelTags = Mapping[str, str | None]


class ConcurrentAliasChange(AliasError):
    """The alias no longer points where the caller expected: someone else moved it first."""

    def __init__(self, name: str, alias: str, expected: str | None, actual: str | None):
        self.expected, self.actual = expected, actual
        super().__init__(
            f"`{alias}` of {name} changed concurrently: expected {version_label(expected)}, "
            f"the registry shows {version_label(actual)}; nothing was changed"
        )


class UnverifiedVersion(AliasError):
    """The version failed verification: no alias may point to it."""


def _checkpoint(step: str) -> None:
    """A named point between two steps: a crash point for the fault-injection tests.

    Tests in-process replace this function; a subprocess is killed here when
    LIFECYCLE_CRASH_AT names the point (`alias-<step>`).
    """
    crash_point(f"alias-{step}")


def _live_aliases(client: Any, name: str) -> dict[str, str]:
    live = reader_of(client).aliases(name)
    if live is None:
        raise AliasError(f"no registered model named {name!r}")
    return live


def _target(client: Any, name: str, version: str) -> ModelRef:
    """The version an alias may point to: it exists, is not retired and verifies."""
    ref = existing_version(client, name, version)
    if is_retired(ref):
        raise AliasError(f"{name} v{version} is retired and cannot hold an alias")
    verification = verify_version(client, name, version, ref=ref)
    if not verification.ok:
        raise UnverifiedVersion(verification.message() + "; nothing was changed")
    return ref


def _usable(client: Any, name: str, version: str, skipped: list[str] | None = None) -> bool:
    """A rollback target: exists, not retired, and verifies (a bad version is skipped, and
    why is added to `skipped`)."""
    try:
        _target(client, name, version)
    except AliasError as error:
        if skipped is not None:
            skipped.append(f"v{version}: {str(error).removesuffix('; nothing was changed')}")
        return False
    return True


def reconcile(client: Any, name: str, *, ledger: Ledger | None = None) -> list[LedgerEntry]:
    """Make the ledger agree with the registry; returns the entries it settled or added."""
    ledger = ledger or Ledger.default()
    with ledger.lock(name):
        return reconcile_locked(client, name, ledger, _live_aliases(client, name))


@contextlib.contextmanager
def _operation(client: Any, name: str, ledger: Ledger) -> Iterator[dict[str, str]]:
    """Hold the model's lock, and start from a ledger that agrees with the registry.

    Yields the registry's aliases as read under the lock (reconciling writes no alias). What
    a crash left behind (an open MLflow run, an untagged version) is settled first.
    """
    with ledger.lock(name):
        live = _live_aliases(client, name)
        recover_registry(client, name)
        reconcile_locked(client, name, ledger, live)
        yield live


def _weight_of(alias: str, model_tags: Mapping[str, str | None]) -> float | None:
    """The canary weight a move of `alias` writes (None for another alias, or a removal)."""
    raw = model_tags.get(config.TAG_CANARY_WEIGHT) if alias == config.CANARY_ALIAS else None
    return None if raw is None else float(raw)


def _change_locked(
    client: Any,
    ledger: Ledger,
    name: str,
    alias: str,
    live: Mapping[str, str],
    to_version: str | None,
    expected: Expected | int,
    model_tags: ModelTags | None = None,
    *,
    adopt: bool = False,
    recorded_weight: float | None = None,
    **audit: str,
) -> dict[str, str]:
    """PENDING, registry write, COMMITTED. The caller holds the lock and read `live` (the
    registry's aliases) under it. Returns the aliases the move ended (alias -> version).

    `model_tags` are written with the alias. A canary's weight among them is recorded in the
    ledger entry (the service routes by the ledger's weight, `promotions.promoted_weight`);
    when the canary already is that version, a new weight is a `weight` entry of its own, and
    the weight the ledger already holds (`recorded_weight`, read by the caller with the rest of
    the ledger) is only written back to the tag. A champion moved to
    the canary's or the shadow's version ends them (`alias_rules`): their removals are ledger
    entries of their own, PENDING and settled with the move, and one `RegistryChange` with it
    (removals first: a writer that stops half way has ended them, never doubled a version).
    `adopt` records a move to the version the alias already points to when that was set
    outside the platform (`registry/promotions.py`): the service serves it only then.
    """
    current = live.get(alias)
    if expected is not ANY_VERSION and expected is not None:
        expected = str(expected)  # a version number given as an int is still that version
    if expected is not ANY_VERSION and expected != current:
        raise ConcurrentAliasChange(name, alias, expected, current)
    tags = dict(model_tags or {})
    if to_version is not None:
        check_move(name, alias, to_version, live, tags)
    writer = writer_of(client)
    weight = _weight_of(alias, tags)
    if current == to_version and not adopt:
        if weight is None or weight == recorded_weight:
            writer.apply(RegistryChange(name, model_tags=tags))  # a tag edited outside, restored
            return {}
        audit = {**audit, "kind": "weight"}  # the same canary, re-weighed: a decision to record
    ended = ended_by(alias, to_version, live)
    entry = ledger.append(LedgerEntry.new(name, alias, current, to_version, weight=weight, **audit))
    why = f"ended: v{to_version} became {alias} ({audit['kind']}: {audit['reason']})"
    who = {"actor": audit["actor"], "dagster_run_id": audit.get("dagster_run_id", "")}
    removals = [
        ledger.append(LedgerEntry.new(name, other, held, None, kind="remove", reason=why, **who))
        for other, held in ended.items()
    ]
    if config.CANARY_ALIAS in ended:
        tags[config.TAG_CANARY_WEIGHT] = None
    _checkpoint("pending-written")
    change = RegistryChange(
        name,
        aliases={**dict.fromkeys(ended), alias: to_version},
        version_tags=stamp(entry),
        model_tags=tags,
    )
    try:
        writer.apply(change)
        _checkpoint("alias-set")
    except Exception:
        # Settle from what the registry shows; if even that fails, the next operation will.
        with contextlib.suppress(Exception):
            reconcile_locked(client, name, ledger, _live_aliases(client, name))
        raise
    for done in (entry, *removals):
        ledger.settle(done.operation_id, COMMITTED)
    return ended


def _ref_or_none(client: Any, name: str, version: str | None) -> ModelRef | None:
    return existing_version(client, name, version) if version else None


def move_alias(
    client: Any,
    name: str,
    alias: str,
    version: str,
    *,
    reason: str,
    actor: str,
    dagster_run_id: str = "",
    expected_version: Expected = ANY_VERSION,
    ledger: Ledger | None = None,
    model_tags: ModelTags | None = None,
    require: Mapping[str, str | None] | None = None,
) -> AliasMove:
    """Point `alias` at `version` (with `model_tags` in the same write); return (previous
    holder, new holder) and, as `.ended`, the canary or shadow the move ended (`alias_rules`).
    `client` is an MlflowClient or `registry_client`'s SQLite registry.

    Moving an alias to the version it already points at records nothing (it writes only
    `model_tags`, if any). `require` names other aliases that must still hold the given
    versions, checked under the same lock (promoting the canary that was judged, not one set
    since): ConcurrentAliasChange otherwise.
    """
    ledger, version, alias = ledger or Ledger.default(), str(version), known(alias)
    with _operation(client, name, ledger) as live:
        for other, held in (require or {}).items():
            if live.get(other) != held:
                raise ConcurrentAliasChange(name, other, held, live.get(other))
        check_move(name, alias, version, live, model_tags or {})  # before the costlier verify
        _target(client, name, version)
        previous = live.get(alias)
        # Read once: under the lock and after reconcile, no other process appends to the
        # model's entries before this move's own, so one read serves every question below.
        entries = ledger.entries(name)
        promoted = promotion_in(entries, alias)
        # The alias already names it, but not by the platform's hand (the MLflow UI or API):
        # this move is what makes it promoted, so it is recorded.
        adopt = previous == version and (promoted is None or promoted.to_version != version)
        ended = _change_locked(
            client, ledger, name, alias, live, version, expected_version, model_tags,
            adopt=adopt, recorded_weight=weight_in(entries, version), kind="move", reason=reason,
            actor=actor, dagster_run_id=dagster_run_id,
        )  # fmt: skip
    current = existing_version(client, name, version)
    return AliasMove(_ref_or_none(client, name, previous), current, ended, adopted=adopt)


def remove_alias(
    client: Any,
    name: str,
    alias: str,
    *,
    reason: str,
    actor: str,
    dagster_run_id: str = "",
    expected_version: Expected = ANY_VERSION,
    ledger: Ledger | None = None,
    model_tags: ModelTags | None = None,
) -> ModelRef | None:
    """Unset `alias` (with `model_tags` in the same write); returns the version that held it
    (None if it was not set)."""
    ledger, alias = ledger or Ledger.default(), known(alias)
    with _operation(client, name, ledger) as live:
        previous = live.get(alias)
        _change_locked(
            client, ledger, name, alias, live, None, expected_version,
            model_tags, kind="remove", reason=reason, actor=actor, dagster_run_id=dagster_run_id,
        )  # fmt: skip
    return _ref_or_none(client, name, previous)


def _holder_label(client: Any, ledger: Ledger, name: str, alias: str, current: str | None) -> str:
    """How a rollback's reason names what it leaves: `v3`, or the ledger's holder that the
    registry lost (`v3 (deleted from the registry)`), else `unset`."""
    promoted = promoted_version(ledger, name, alias) if current is None else None
    if promoted is None:
        return version_label(current)
    gone = reader_of(client).version(name, promoted) is None
    return f"v{promoted} ({'deleted from the registry' if gone else 'alias removed outside'})"


def rollback(
    client: Any,
    name: str,
    *,
    actor: str,
    reason: str = "",
    to_version: str | None = None,
    alias: str = config.CHAMPION_ALIAS,
    dagster_run_id: str = "",
    ledger: Ledger | None = None,
) -> AliasMove:
    """Move `alias` back to its previous holder from the ledger, or to `to_version`; like a
    move, it ends the canary or shadow of the version that becomes the champion."""
    ledger, alias = ledger or Ledger.default(), known(alias)
    with _operation(client, name, ledger) as live:
        current = live.get(alias)
        if to_version is None:
            # `previous_holder` only returns versions that pass `_usable` (`_target` holds);
            # the ones it passed over are named, so "no earlier" is not taken for an empty past.
            skipped: list[str] = []
            usable = functools.partial(_usable, client, name, skipped=skipped)
            target = previous_holder(name, alias, usable=usable, ledger=ledger)
            if target is None:
                passed_over = f" (passed over: {'; '.join(skipped)})" if skipped else ""
                raise AliasError(
                    f"the ledger has no earlier `{alias}` of {name} to roll back to{passed_over}"
                )
        else:
            target = str(to_version)
            if target == current:
                raise AliasError(f"{name} v{target} already holds `{alias}`")
            _target(client, name, target)
        why = f"rollback from {_holder_label(client, ledger, name, alias, current)} to v{target}"
        if to_version is None and skipped:
            why += f"{PASSED_OVER}{'; '.join(skipped)})"
        why += f": {reason}" if reason else ""
        ended = _change_locked(
            client, ledger, name, alias, live, target, ANY_VERSION,
            kind="rollback", reason=why, actor=actor, dagster_run_id=dagster_run_id,
        )  # fmt: skip
    return AliasMove(
        _ref_or_none(client, name, current), existing_version(client, name, target), ended
    )
