"""Settle what a killed alias operation left PENDING, and record changes made behind the ledger.

`aliases.reconcile` (and every alias operation, first, under the model's lock) asks the
registry, the source of truth, what actually happened: a PENDING move the registry shows is
COMMITTED (and its new holder stamped), one it does not show is ABORTED; an alias that differs
from the ledger's last entry is recorded as `external`, worded for what happened: `deleted`
(the alias is gone: the ledger keeps its promoted holder, which no service replaces with
another version), `moved` (it names another version, no promotion) or `set` (it names a version
where the ledger had none) outside the ledger. A PENDING `weight` entry (the canary
re-weighed, its alias unchanged) is judged by the `canary_weight` tag, the only thing it
writes; a committed entry that carries a weight writes that tag again, so a move that died
between the alias and its tag leaves the registry showing the weight the ledger recorded.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.registry.changes import RegistryChange, writer_of
from lifecycle_assets.registry.ledger import (
    ABORTED,
    COMMITTED,
    PENDING,
    AliasError,
    Ledger,
    LedgerEntry,
    version_label,
)
from lifecycle_assets.registry.promotions import promotion_in, set_command, way_out
from lifecycle_assets.registry.reader import reader_of
from lifecycle_assets.registry.refs import ModelRef


def existing_version(client: Any, name: str, version: str) -> ModelRef:
    """The registered version, or AliasError naming it."""
    ref = reader_of(client).version(name, str(version))
    if ref is None:
        raise AliasError(f"{name} has no version {version!r}")
    return ref


def is_retired(ref: ModelRef) -> bool:
    return ref.tags.get(config.TAG_RETIRED, "").lower() == "true"


def stamp(entry: LedgerEntry) -> dict[str, dict[str, str]]:
    """The tags that record the move on its new holder: version -> tags (none for a removal,
    nor for a new weight: the canary's `canary_since` stays when it was made the canary)."""
    if entry.to_version is None or entry.kind == "weight":
        return {}
    tags = {
        f"{entry.alias}_since": entry.time,
        f"{entry.alias}_by": entry.actor,
        f"{entry.alias}_reason": entry.reason,
        f"{entry.alias}_dagster_run_id": entry.dagster_run_id,
        f"{entry.alias}_previous_version": entry.from_version or "",
    }
    return {entry.to_version: tags}


def weight_tags(entry: LedgerEntry) -> dict[str, str]:
    """The registered-model tag that mirrors the weight an entry recorded (none without one)."""
    return {} if entry.weight is None else {config.TAG_CANARY_WEIGHT: str(entry.weight)}


def _settle_retire(client: Any, ledger: Ledger, entry: LedgerEntry) -> LedgerEntry:
    """A retire is done once the version carries the retired tag (its last step)."""
    version = entry.from_version or ""
    if is_retired(existing_version(client, entry.model, version)):
        note = "reconciled: the version is tagged retired, its process did not confirm it"
        return ledger.settle(entry.operation_id, COMMITTED, note)
    note = "reconciled: the version is not tagged retired"
    return ledger.settle(entry.operation_id, ABORTED, note)


def _shows(client: Any, live: dict[str, str], entry: LedgerEntry) -> bool:
    """Whether the registry shows the PENDING entry's change."""
    if live.get(entry.alias) != entry.to_version:
        return False
    if entry.kind != "weight":
        return True
    state = reader_of(client).model_state(entry.model)
    return state is not None and state.tags.get(config.TAG_CANARY_WEIGHT) == str(entry.weight)


def outside_change(recorded: str | None, live: str | None) -> str:
    """How the registry's alias differs from the ledger's holder, in three words."""
    if live is None:
        return "deleted outside the ledger"
    return "set outside the ledger" if recorded is None else "moved outside the ledger"


def external_reason(
    name: str, alias: str, recorded: str | None, live: str | None, promoted: str | None
) -> str:
    """The reason of an `external` entry: what changed outside the ledger, and what follows
    (`promoted`: the platform's last promotion of the alias, which the service keeps to)."""
    change = f"the alias was {outside_change(recorded, live)}"
    if live is None:
        if promoted is None:
            return f"{change} ({version_label(recorded)}); the platform promoted none"
        return (
            f"{change} ({version_label(recorded)}); the ledger keeps v{promoted} as the "
            f"promoted `{alias}` and no other version serves in its place: {way_out(name, alias)}"
        )
    return (
        f"{change} ({version_label(recorded)} -> v{live}); not a promotion: the ledger keeps "
        f"{version_label(promoted)} as the promoted `{alias}` (`{set_command(name, alias, live)}` "
        f"would make v{live} one)"
    )


def reconcile_locked(
    client: Any, name: str, ledger: Ledger, live: dict[str, str]
) -> list[LedgerEntry]:
    """Settle PENDING entries and record external changes against `live`, the registry's aliases."""
    settled = []
    for entry in ledger.entries(name, state=PENDING):
        if entry.kind == "retire":
            settled.append(_settle_retire(client, ledger, entry))
        elif _shows(client, live, entry):
            change = RegistryChange(name, version_tags=stamp(entry), model_tags=weight_tags(entry))
            writer_of(client).apply(change)
            note = "reconciled: the registry shows the change, its process did not confirm it"
            settled.append(ledger.settle(entry.operation_id, COMMITTED, note))
        else:
            note = "reconciled: the registry does not show the change"
            settled.append(ledger.settle(entry.operation_id, ABORTED, note))
    committed = ledger.entries(name, state=COMMITTED)  # one read: holders and promotions
    recorded = {e.alias: e.to_version for e in committed if e.kind != "retire"}
    for alias in sorted(set(live) | set(recorded)):
        if live.get(alias) != recorded.get(alias):
            entry = promotion_in(committed, alias)
            promoted = None if entry is None else entry.to_version
            reason = external_reason(name, alias, recorded.get(alias), live.get(alias), promoted)
            found = LedgerEntry.new(
                name, alias, recorded.get(alias), live.get(alias), kind="external",
                reason=reason, actor="reconcile",
            )  # fmt: skip
            found = dataclasses.replace(found, state=COMMITTED, settled_at=found.time)
            settled.append(ledger.append(found))
    return settled
