"""The traffic weight the service gives its canary: the ledger's, never a tag edited in MLflow.

The `canary_weight` tag on the registered model is a mirror anyone with MLflow write access
can edit: set to 1.0 in the MLflow UI, it would send every request to a canary nobody
weighed (one whose gates failed, say), unreported. So the weight routed by is the one the
ledger recorded for the served canary version (`promotions.promoted_weight`); a tag that says
otherwise is logged as a warning and shown in `/metadata` (`canary_weight_problem`), and a
canary the ledger holds no weight for gets no traffic. One ledger read per poll, only while a
canary is served.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.promotions import promoted_weight, weight_problem
from lifecycle_assets.serving.fallback import ledger_unreadable

logger = logging.getLogger(__name__)


@dataclass
class CanaryWeight:
    """Follows the ledger's weight of one model's canary; `problem` is the public line on a
    registry tag that disagrees (None when they agree or no canary is served)."""

    ledger: Ledger
    name: str
    problem: str | None = None

    def weight(self, canary_version: str | None, registry_weight: str | None) -> float:
        """The share of records the canary answers: the ledger's weight for `canary_version`
        (0 without a canary, without a recorded weight, or when the ledger cannot be read)."""
        if canary_version is None:
            self._report(None)
            return 0.0
        try:
            recorded = promoted_weight(self.ledger, self.name, canary_version)
        except Exception as error:
            unreadable = ledger_unreadable(self.ledger, error)
            self._report(f"{self.name} `canary` v{canary_version} gets no traffic: {unreadable}")
            return 0.0
        self._report(weight_problem(self.name, canary_version, registry_weight, recorded))
        return 0.0 if recorded is None else recorded

    def _report(self, problem: str | None) -> None:
        """A warning when a disagreement starts or changes, a note when it ends."""
        if problem is not None and problem != self.problem:
            logger.warning("canary weight not obeyed: %s", problem)
        elif problem is None and self.problem is not None:
            logger.warning("%s: the canary weight problem is gone", self.name)
        self.problem = problem
