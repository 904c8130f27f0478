"""A canary or shadow the service cannot serve: named, counted and logged, never silent.

The champion has its own paths (`fallback.py` serves the last good version, `lost_champion.py`
leaves the model out). A canary or shadow whose holder fails verification (a tampered
artifact, a version that does not load or was not promoted) or whose alias the registry lost
while the ledger still names it (the version deleted, the alias removed in MLflow) is simply
not served: the champion answers the canary's share and nobody is mirrored. That is the safe
answer, but it used to be silent: `/readyz` read "ready" while an operator believed a canary
was taking its share. Now each such role is a `LostRole`, named with its version and reason
under `lost_roles` in `/readyz` and `/metadata`, shown by the `lifecycle_rollout_lost` gauge,
and logged when it starts and ends; the records the ledger's weight sends to a lost canary are
answered by the champion and counted (`lifecycle_canary_rerouted_total`), and the batches a
lost shadow would have mirrored are counted as skipped (`lifecycle_shadow_skipped_total` with
`reason="lost"`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.registry.ledger import Ledger, utc_now
from lifecycle_assets.registry.promotions import promoted_weight
from lifecycle_assets.serving.fallback import ledger_unreadable
from lifecycle_assets.serving.metrics import PredictionMetrics
from lifecycle_assets.serving.model_set import CANARY, CHAMPION, SHADOW
from lifecycle_assets.serving.router import canary_mask, route_id

logger = logging.getLogger(__name__)

LOST_ROLES = (CANARY, SHADOW)
_ALIASES = {CANARY: config.CANARY_ALIAS, SHADOW: config.SHADOW_ALIAS}


@dataclass(frozen=True)
class LostRole:
    """A canary or shadow version named by the registry or the ledger that does not serve.

    `reason` is public (no paths, no SQL); `weight` is the share of records the ledger routes
    to a lost canary, answered by the champion instead (0 for a shadow).
    """

    role: str
    version: str
    reason: str
    weight: float = 0.0
    since: str = field(default_factory=utc_now)

    def public(self) -> dict[str, Any]:
        return asdict(self)


class LostRoles:
    """The lost canary and shadow of one model. The registry watcher's thread writes; the
    request path reads one reference (`lost`, replaced whole)."""

    def __init__(self, name: str, metrics: PredictionMetrics, ledger: Ledger) -> None:
        self.name, self.metrics, self.ledger = name, metrics, ledger
        self.lost: dict[str, LostRole] = {}
        for role in LOST_ROLES:  # 0 from the start: an alert can tell "fine" from "no data"
            self.metrics.rollout_lost.labels(name, role).set(0.0)

    def lose(self, role: str, version: str, reason: str, champion: str) -> None:
        """Record that `role`'s holder `version` does not serve, and say so once."""
        known = self.lost.get(role)
        if known is not None and (known.version, known.reason) == (version, reason):
            return
        weight = self._ledger_weight(version) if role == CANARY else 0.0
        instead = (
            f"champion v{champion} answers its {weight:g} share"
            if role == CANARY
            else "no request is mirrored"
        )
        logger.error(
            "LOST %s: %s `%s` v%s does not serve (%s); %s",
            role.upper(), self.name, _ALIASES[role], version, reason, instead,
        )  # fmt: skip
        self.lost = {**self.lost, role: LostRole(role, version, reason, weight)}
        self.metrics.rollout_lost.labels(self.name, role).set(1.0)

    def found(self, role: str) -> None:
        """`role` serves what the registry names, or nothing is named: no longer lost."""
        known = self.lost.get(role)
        if known is None:
            return
        self.lost = {r: lost for r, lost in self.lost.items() if r != role}
        self.metrics.rollout_lost.labels(self.name, role).set(0.0)
        logger.warning("%s `%s` v%s is no longer lost", self.name, _ALIASES[role], known.version)

    def public(self) -> dict[str, dict[str, Any]]:
        return {role: lost.public() for role, lost in sorted(self.lost.items())}

    def count_rerouted(self, rows: Sequence[dict[str, Any]]) -> None:
        """Count the answered rows the champion gave that the ledger's weight routes to the
        lost canary (routed as `predictor.py` routes: by record id, else prediction id)."""
        lost = self.lost.get(CANARY)
        if lost is None or lost.weight <= 0.0:
            return
        ids = [
            route_id(row["record_id"], row["prediction_id"])
            for row in rows
            if row["variant"] == CHAMPION
        ]
        if ids and (rerouted := int(canary_mask(ids, lost.weight).sum())):
            self.metrics.canary_rerouted.labels(self.name, lost.version).inc(rerouted)

    def _ledger_weight(self, version: str) -> float:
        """The share the ledger gives canary `version` (0 when it records none or cannot be
        read: the count of rerouted records is then 0, never a guess)."""
        try:
            weight = promoted_weight(self.ledger, self.name, version)
        except Exception as error:
            ledger_unreadable(self.ledger, error)
            return 0.0
        return 0.0 if weight is None else weight
