"""Canary and shadow: aliases moved through the ledger, plus the canary's traffic weight.

The weight is recorded in the ledger entry of each canary move, and a new weight for the same
canary is a `weight` entry of its own: the service routes by the ledger's weight
(`promotions.promoted_weight`), as it serves only the versions the ledger names. The
registered-model tag `canary_weight` (a float in [0, 1] as a string) mirrors it for MLflow's
readers; it is written with the alias (one `RegistryChange`: one transaction on the SQLite
registry), and a tag edited in MLflow directly is reported, never obeyed.
Neither the canary nor the shadow may be the champion's own version, a champion moved to the
canary's or the shadow's version ends it, and a canary is never set without its weight
(`alias_rules`, checked by `move_alias` whichever command asks).
"""

from __future__ import annotations

import math
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.registry.alias_rules import AliasMove
from lifecycle_assets.registry.aliases import ANY_VERSION, Expected, move_alias, remove_alias
from lifecycle_assets.registry.ledger import AliasError, Ledger
from lifecycle_assets.registry.reader import reader_of
from lifecycle_assets.registry.refs import ModelRef


def validate_weight(weight: float) -> float:
    """The weight as a float in [0, 1], or AliasError."""
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise AliasError(f"a canary weight is a number in [0, 1], not {weight!r}") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise AliasError(f"a canary weight is a number in [0, 1], not {weight!r}")
    return value


def set_canary(
    client: Any,
    name: str,
    version: str,
    weight: float,
    *,
    reason: str,
    actor: str,
    dagster_run_id: str = "",
    ledger: Ledger | None = None,
) -> tuple[ModelRef | None, ModelRef]:
    """Point `canary` at `version` with `weight` of the traffic; (previous, new) canary.

    The weight tag is written with the alias: a refused move leaves the current canary's
    weight untouched; an unchanged canary gets the new weight alone.
    """
    version, value = str(version), validate_weight(weight)
    why = f"canary weight {value:g}" + (f": {reason}" if reason else "")
    return move_alias(
        client, name, config.CANARY_ALIAS, version, reason=why, actor=actor,
        dagster_run_id=dagster_run_id, ledger=ledger,
        model_tags={config.TAG_CANARY_WEIGHT: str(value)},
    )  # fmt: skip


def clear_canary(
    client: Any,
    name: str,
    *,
    reason: str,
    actor: str,
    dagster_run_id: str = "",
    ledger: Ledger | None = None,
    expected_version: Expected = ANY_VERSION,
) -> ModelRef | None:
    """Unset `canary` and its weight (in the same write); returns the version that was canary.
    With `expected_version`, only if the canary is still that version (ConcurrentAliasChange
    otherwise): a verdict on one canary must not clear another set since."""
    return remove_alias(
        client, name, config.CANARY_ALIAS, reason=reason, actor=actor,
        dagster_run_id=dagster_run_id, ledger=ledger, model_tags={config.TAG_CANARY_WEIGHT: None},
        expected_version=expected_version,
    )  # fmt: skip


def set_shadow(
    client: Any,
    name: str,
    version: str,
    *,
    reason: str,
    actor: str,
    dagster_run_id: str = "",
    ledger: Ledger | None = None,
) -> tuple[ModelRef | None, ModelRef]:
    """Point `shadow` at `version`: it scores every request, its answers are only logged."""
    version = str(version)
    return move_alias(
        client, name, config.SHADOW_ALIAS, version, reason=reason, actor=actor,
        dagster_run_id=dagster_run_id, ledger=ledger,
    )  # fmt: skip


def clear_shadow(
    client: Any,
    name: str,
    *,
    reason: str,
    actor: str,
    dagster_run_id: str = "",
    ledger: Ledger | None = None,
) -> ModelRef | None:
    """Unset `shadow`; returns the version that was shadow."""
    return remove_alias(
        client,
        name,
        config.SHADOW_ALIAS,
        reason=reason,
        actor=actor,
        dagster_run_id=dagster_run_id,
        ledger=ledger,
    )


def promote_canary(
    client: Any,
    name: str,
    *,
    reason: str,
    actor: str,
    dagster_run_id: str = "",
    ledger: Ledger | None = None,
    expected_version: str | None = None,
) -> AliasMove:
    """Make the canary the champion; (previous, new) champion. The canary and its weight end
    in the same registry write (`alias_rules`), so no crash leaves a champion that is also
    its own canary.

    With `expected_version` (the canary a verdict judged), the promotion happens only while
    that version is still the canary, checked under the alias lock: an operator who set another
    canary meanwhile gets neither an unjudged champion nor a cleared canary.
    """
    canary = reader_of(client).resolve(name, config.CANARY_ALIAS)
    if canary is None:
        raise AliasError(f"{name} has no canary to promote")
    judged = canary.version if expected_version is None else str(expected_version)
    return move_alias(
        client, name, config.CHAMPION_ALIAS, judged, reason=f"canary promoted: {reason}",
        actor=actor, dagster_run_id=dagster_run_id, ledger=ledger,
        require={config.CANARY_ALIAS: judged},
    )  # fmt: skip
