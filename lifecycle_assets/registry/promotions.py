"""Which version the platform promoted to an alias: the ledger's word, not the registry's.

Anyone with write access to MLflow (its UI, its REST API, `MlflowClient`) can point `champion`
at any version: one that failed its gates, one nobody reviewed. Only `registry/aliases.py`
moves an alias after verifying the version and under the model's lock, and it records every
move in the ledger first. So a version may serve an alias only when the ledger's last
committed move of that alias made by the platform (`move`, `rollback`, `remove`; not the
`external` entries reconcile writes to record what it found) points to it. Anything else is
a change behind the platform's back: the service refuses it and keeps what the ledger names,
and `lifecycle status` says so.

A move in flight is PENDING in the ledger while the registry already shows it; that is not a
refusal but a wait (`Promotion.pending`), settled a moment later by its own process or by
the next `reconcile`.

The canary's traffic weight is the same kind of fact: the registry's `canary_weight` tag is a
mirror anyone can edit, the weight the platform set is in the ledger (`promoted_weight`).
The service routes by the ledger's weight, and a tag that says otherwise is reported
(`weight_problem`), never obeyed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lifecycle_assets import config
from lifecycle_assets.registry.ledger import (
    COMMITTED,
    PENDING,
    Ledger,
    LedgerEntry,
    version_label,
)
from lifecycle_assets.registry.read_models import RegistryReader

# Ledger entries that record a decision of the platform; `external` only records what
# reconcile found in the registry, and `retire` holds no alias. A `weight` entry re-weighs
# the canary it names.
PLATFORM_KINDS = ("move", "remove", "rollback", "weight")


@dataclass(frozen=True)
class Promotion:
    """What the ledger says about `alias` -> `version`: `ok`, `pending`, or `reason` why not."""

    alias: str
    version: str | None
    promoted: str | None
    pending: bool = False

    @property
    def ok(self) -> bool:
        return self.version == self.promoted

    @property
    def reason(self) -> str:
        """One line for a person (no paths): why the registry's holder may not serve."""
        return (
            f"`{self.alias}` -> {version_label(self.version)} was not set through the platform "
            f"(the ledger's last promotion is {version_label(self.promoted)})"
        )


def last_promotion(entries: Iterable[LedgerEntry]) -> LedgerEntry | None:
    """The newest committed entry the platform itself made, of one alias's entries."""
    found = None
    for entry in entries:
        if entry.state == COMMITTED and entry.kind in PLATFORM_KINDS:
            found = entry
    return found


def promotion_in(entries: Iterable[LedgerEntry], alias: str) -> LedgerEntry | None:
    """`last_promotion` of `alias` among a model's entries already read (of any aliases)."""
    return last_promotion(e for e in entries if e.alias == alias)


def promoted_version(ledger: Ledger, name: str, alias: str) -> str | None:
    """The version the platform last moved `alias` of `name` to (None: unset or never)."""
    entry = last_promotion(ledger.entries(name, alias))
    return None if entry is None else entry.to_version


def promotion(ledger: Ledger, name: str, alias: str, version: str | None) -> Promotion:
    """Whether the registry's holder `version` of `alias` is the one the platform promoted."""
    entries = ledger.entries(name, alias)
    last = last_promotion(entries)
    promoted = None if last is None else last.to_version
    in_flight = any(
        e.state == PENDING and e.kind in PLATFORM_KINDS and e.to_version == version for e in entries
    )
    return Promotion(alias, version, promoted, pending=version != promoted and in_flight)


def promoted_weight(ledger: Ledger, name: str, version: str) -> float | None:
    """The traffic weight the platform last set for `version` as `canary` of `name`; None
    when its last canary entry names another version or no weight (a canary set before
    weights were recorded, or adopted by `promote --alias canary`)."""
    return weight_in(ledger.entries(name, config.CANARY_ALIAS), version)


def weight_in(entries: Iterable[LedgerEntry], version: str) -> float | None:
    """`promoted_weight` from a model's entries already read (of any aliases)."""
    entry = promotion_in(entries, config.CANARY_ALIAS)
    return entry.weight if entry is not None and entry.to_version == version else None


def registry_weight(reader: RegistryReader, name: str) -> str | None:
    """The registry's `canary_weight` tag of `name` as written (the mirror a person may have
    edited; None when unset): what `weight_problem` compares with the ledger's."""
    state = reader.model_state(name)
    return None if state is None else state.tags.get(config.TAG_CANARY_WEIGHT)


def weight_problem(
    name: str, version: str, registry_weight: str | None, ledger_weight: float | None
) -> str | None:
    """One line for a person when the registry's `canary_weight` tag (`registry_weight`, raw)
    is not the weight the ledger recorded for canary `version`; None when they agree."""
    try:
        shown = None if registry_weight in (None, "") else float(registry_weight)
    except ValueError:
        shown = float("nan")  # not a number: never equal to the ledger's
    if ledger_weight is not None and shown == ledger_weight:
        return None
    label = "none" if registry_weight in (None, "") else repr(registry_weight)
    head = f"{name} `canary` v{version} has weight {label} in the registry, "
    fix = f"`lifecycle canary {name} {version} --weight W` records the weight to use"
    if ledger_weight is None:
        return head + f"but none in the ledger, so it gets no traffic: {fix}"
    return (
        head + f"but {ledger_weight:g} in the ledger (changed outside the platform): traffic "
        f"follows the ledger's {ledger_weight:g}; {fix}"
    )


def set_command(name: str, alias: str, version: str = "VERSION") -> str:
    """The `lifecycle` command that sets `alias` to `version` through the platform (a canary
    only with its weight: `promote --alias canary` is refused)."""
    if alias == config.CHAMPION_ALIAS:
        return f"lifecycle promote {name} {version}"
    if alias == config.CANARY_ALIAS:
        return f"lifecycle canary {name} {version} --weight W"
    if alias == config.SHADOW_ALIAS:
        return f"lifecycle shadow {name} {version}"
    return f"lifecycle promote {name} {version} --alias {alias}"


def way_out(name: str, alias: str) -> str:
    """What an operator runs when the registry lost the ledger's holder of `alias`."""
    if alias == config.CHAMPION_ALIAS:
        return f"run `lifecycle rollback {name}` or promote another version"
    if alias in (config.CANARY_ALIAS, config.SHADOW_ALIAS):
        return f"set another (`lifecycle {alias} {name} VERSION`) or `--clear` it"
    return f"set another (`{set_command(name, alias)}`)"


def lost_holder_reason(name: str, alias: str, version: str, *, deleted: bool) -> str:
    """One line on the ledger's holder of `alias` that the registry no longer shows, with the
    way out: the service cannot serve it after a restart, and serves no other in its place."""
    if deleted:
        return f"{name} `{alias}` v{version} was deleted from the registry: {way_out(name, alias)}"
    return (
        f"{name} `{alias}` v{version} is no longer set in the registry (alias removed or model "
        f"renamed outside the platform): {way_out(name, alias)}"
    )


@dataclass(frozen=True)
class LostHolder:
    """The ledger's holder of an alias that the registry no longer shows, and why (one line)."""

    version: str
    reason: str


def find_lost_holder(
    ledger: Ledger, reader: RegistryReader, name: str, alias: str
) -> LostHolder | None:
    """The ledger's holder of `alias` when the registry shows none (`lost_holder_reason`);
    None when the registry shows a holder or the platform never promoted one."""
    if reader.resolve(name, alias) is not None:
        return None
    version = promoted_version(ledger, name, alias)
    if version is None:
        return None
    deleted = reader.version(name, version) is None
    return LostHolder(version, lost_holder_reason(name, alias, version, deleted=deleted))


def lost_holder(ledger: Ledger, reader: RegistryReader, name: str, alias: str) -> str | None:
    """Why the registry shows no holder of `alias` that the ledger names (`find_lost_holder`)."""
    found = find_lost_holder(ledger, reader, name, alias)
    return None if found is None else found.reason
