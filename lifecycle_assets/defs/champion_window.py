"""Whether training now would read anything the champion was not trained on.

A retrain on the champion's own training set registers nothing (`unchanged_champion`: "nothing
changed"), yet its run ends green. The drift sensor asks this before it requests one, so that a
drift seen while no newer data has landed waits for that data instead of spending its cooldown
on a run that cannot react. The answer is the training asset's own: the window's usable days
(`select_window`) and their feature partitions are what the training set is built from, the
same partitions under the same model spec make the same table and so the same digest, and
`unchanged_champion`'s own test (`trained_on`) then judges that digest as the asset would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lifecycle_assets import config
from lifecycle_assets.data.fingerprint import model_spec_hash
from lifecycle_assets.data.ingest import select_window
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.defs.assets.training_set import trained_on
from lifecycle_assets.registry.refs import ModelRef, resolve
from lifecycle_assets.spec import ModelSpec

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class ChampionsWindow:
    """The training window holds exactly the champion's training set."""

    champion: ModelRef
    last_day: str

    def needed(self) -> str:
        """What would let a retrain produce a new version, in words."""
        return (
            f"land newer labelled data: the window ends {self.last_day}, "
            f"champion v{self.champion.version} was trained on it"
        )


def champions_window(client: MlflowClient, spec: ModelSpec, lake: Lake) -> ChampionsWindow | None:
    """The champion and the window's last day when a training run now would find nothing
    changed; None when it would train something new (or there is no champion to compare)."""
    champion = resolve(client, spec.name, config.CHAMPION_ALIAS)
    if champion is None or not champion.training_digest:
        return None
    try:
        manifest = lake.training_manifest(champion.training_digest)
    except FileNotFoundError:
        return None  # trained elsewhere, or its manifest is gone: training would say
    days = select_window(lake, spec).days
    entries = {day: lake.feature_entry(day) for day in days}
    partitions = {day: (entry or {}).get("sha256") for day, entry in entries.items()}
    if not days or partitions != manifest.get("feature_partitions"):
        return None
    # Same partitions, same split settings: the table, and so the digest, would be the
    # champion's. The one judgement of "nothing changed" decides the rest (the model spec).
    would_be = {"digest": champion.training_digest, "model_spec_sha256": model_spec_hash(spec)}
    if not trained_on(champion, would_be):
        return None
    return ChampionsWindow(champion, max(days))
