"""A model whose champion the registry lost: not served, and said why, never replaced.

The ledger names the champion; the MLflow registry may have lost it since (the version deleted
in its UI, the alias removed). A running service keeps serving it from memory; a service that
starts cannot load it, and serving an earlier version in its place would serve what the ledger
does not name. So the model is left out with one line saying which version went and what to
run (`registry/promotions.lost_holder`), which the service shows in `/readyz`, `/metadata`,
the model's routes and its log, and serves again once the alias is moved through the ledger.
"""

from __future__ import annotations

from lifecycle_assets import config
from lifecycle_assets.registry.ledger import AliasError, Ledger
from lifecycle_assets.registry.promotions import lost_holder
from lifecycle_assets.registry.read_models import RegistryReader
from lifecycle_assets.serving.model_env import ModelSourceError


class LostChampion(ModelSourceError):
    """The ledger's champion is gone from the registry (deleted, alias removed)."""


def refuse_lost_champion(ledger: Ledger, reader: RegistryReader, name: str) -> None:
    """LostChampion when the registry shows no champion of `name` that the ledger names;
    ModelSourceError when the ledger cannot be read to tell (the model is not served either)."""
    try:
        lost = lost_holder(ledger, reader, name, config.CHAMPION_ALIAS)
    except AliasError as error:
        why = f"model {name!r} has no champion in the registry: {error}"
        raise ModelSourceError(why) from None
    if lost:
        raise LostChampion(lost)
