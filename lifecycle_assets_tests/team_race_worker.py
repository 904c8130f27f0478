"""One "machine" of the promotion race: move `champion` expecting v1, print who won as JSON.

Run as `python -m lifecycle_assets_tests.team_race_worker MODEL VERSION GO_FILE` in a working
folder of its own, with only the team-mode variables pointing at the shared servers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.aliases import ConcurrentAliasChange, move_alias
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.tracking import configure_mlflow


def main(model: str, version: str, go_file: str) -> None:
    settings = Settings.from_env()
    client = configure_mlflow(settings)
    ledger = Ledger.for_settings(settings)
    go = Path(go_file)
    while not go.exists():  # both machines start the race at the same moment
        time.sleep(0.005)
    try:
        move_alias(
            client,
            model,
            config.CHAMPION_ALIAS,
            version,
            reason="race",
            actor=f"machine-{version}",
            expected_version="1",
            ledger=ledger,
        )
        outcome = {"version": version, "won": True, "ledger": type(ledger).__name__}
    except ConcurrentAliasChange as error:
        outcome = {"version": version, "won": False, "error": str(error)}
    sys.stdout.write(json.dumps(outcome) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
