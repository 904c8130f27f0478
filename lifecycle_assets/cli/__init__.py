"""The `lifecycle` command: run the lifecycle, simulate data, show what serves, move aliases.

Alias commands call `registry.aliases`, so the CLI, the Dagster assets and scripts share one
ledger and one lock; their errors are one line and a non-zero exit, never a traceback.
"""

import lifecycle_assets.cli.provenance  # noqa: F401  (registers trace and lineage)
from lifecycle_assets.cli import aliases, data, labels, lifecycle, operations, team  # noqa: F401  (registers the commands)
from lifecycle_assets.cli.app import main

__all__ = ["main"]
