"""Loading the code location imports none of the heavy ML stack.

Every process that loads it pays for what it imports: the Dagster webserver and daemon, each run
worker, and `lifecycle run` before its first ingest, which needs none of MLflow or scikit-learn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("mlflow", "sklearn", "scipy", "matplotlib", "bentoml", "skops")

# Runs in a fresh interpreter: a finder first on `sys.meta_path` records which project module
# imported each heavy package first, then steps aside so the import proceeds as usual.
PROBE = f"""
import sys
import traceback

HEAVY = {HEAVY!r}
importers = {{}}


class Witness:
    def find_spec(self, name, path=None, target=None):
        if name in HEAVY and name not in importers:
            frames = traceback.extract_stack()[:-1]
            importers[name] = [
                f"{{frame.filename.split('/lifecycle_assets/')[-1]}}:{{frame.lineno}}"
                for frame in frames
                if "/lifecycle_assets/" in frame.filename
            ]
        return None


sys.meta_path.insert(0, Witness())

import lifecycle_assets.cli.app
import lifecycle_assets.cli.lifecycle
import lifecycle_assets.definitions
import lifecycle_assets.lifecycle_run
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.spec import configured_specs

defs = build_definitions(configured_specs())
jobs = defs.resolve_all_job_defs()
assert jobs, "the definitions hold no job"
for name in HEAVY:
    if name in sys.modules:
        print(f"{{name}} imported via", " <- ".join(reversed(importers.get(name, ["?"]))))
"""


def test_the_code_location_loads_without_the_ml_stack(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LIFECYCLE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", "heavy imports while loading the code location:\n" + result.stdout
