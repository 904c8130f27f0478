"""Drift gauges from the shared drift report: what every replica exports, read where it is kept.

The drift_report asset writes `reports/<model>/drift/latest.json` through the storage door: a
local file in the embedded default, an object on the shared storage in team mode, so every
replica on every host exports the same scores. A thread of its own (`follow`) looks at the
report every few seconds (it changes once a day), so the gauges follow it with no request: a model
that gets no traffic after its report still raises `lifecycle_drift_detected` at the next scrape.
The report is re-read only when its listing changes (size and ETag, or mtime): never by comparing
clocks, as an object's one-second LastModified would miss a quick rewrite. No request ever waits
on object storage for it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from lifecycle_assets import storage
from lifecycle_assets.ml.drift import latest_drift_path
from lifecycle_assets.serving.metrics import PredictionMetrics

logger = logging.getLogger(__name__)

DRIFT_CHECK_SECONDS = 5.0


class DriftGauges:
    """Exports one model's newest drift report as Prometheus gauges when it changes."""

    def __init__(
        self,
        reports_dir: Path,
        model: str,
        metrics: PredictionMetrics,
        check_seconds: float = DRIFT_CHECK_SECONDS,
    ) -> None:
        self.path = latest_drift_path(reports_dir, model)
        self.model = model
        self.metrics = metrics
        self.check_seconds = check_seconds
        self.remote = storage.is_remote(self.path)
        self._seen: str | None = None
        self._busy = threading.Lock()

    def follow(self) -> None:
        """Check the report every `check_seconds` in a daemon thread, for the worker's life."""

        def loop() -> None:
            while True:
                self.check()
                time.sleep(self.check_seconds)

        threading.Thread(target=loop, name=f"drift-gauges-{self.model}", daemon=True).start()

    def refresh(self) -> None:
        """Re-export the gauges now if the report changed (for `/metadata`); a remote report
        is checked in the background."""
        if not self.remote:
            self.check()
        elif not self._busy.locked():
            threading.Thread(target=self.check, name="drift-gauges", daemon=True).start()

    def check(self) -> None:
        """Read the report if its listing changed and export it; never raises."""
        if not self._busy.acquire(blocking=False):
            return
        try:
            self._check()
        finally:
            self._busy.release()

    def _check(self) -> None:
        fingerprint = self._seen
        try:
            info = storage.object_info(self.path)
            if info is None or info.fingerprint == self._seen:
                return
            fingerprint = info.fingerprint
            report = json.loads(storage.read_bytes(self.path))
            if not isinstance(report, dict):
                raise ValueError("the drift report is not a JSON object")
            self.metrics.export_drift(self.model, report)
            self._seen = fingerprint
        except FileNotFoundError:
            return
        except Exception as error:  # half-written, corrupt or unreachable: keep the gauges
            # A corrupt report is not re-read until it changes; an unreachable store is retried.
            self._seen = fingerprint
            logger.warning("cannot read the drift report %s: %s", self.path, error)
