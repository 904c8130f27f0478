"""The lifecycle benchmark's import floor: the modules a run loaded are written at its exit,
without the project's own, and imported again in a fresh interpreter, one that fails alone
skipped rather than ending the benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from body_timer import ENV_MODULES  # noqa: E402
from lifecycle import import_floor  # noqa: E402


def test_a_process_writes_its_third_party_modules_in_import_order(tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    code = (
        "import body_timer; body_timer.install();"
        " import lifecycle_assets.config, colorsys, email.mime.text"
    )
    env = {**os.environ, ENV_MODULES: str(out), "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=BENCHMARKS)
    modules = json.loads(out.read_text())
    assert not [name for name in modules if name.startswith(("lifecycle_assets", "body_timer"))]
    assert modules.index("email") < modules.index("email.mime.text")
    assert "colorsys" in modules and "dagster" in modules  # body_timer.install imports Dagster


def test_the_floor_imports_each_listed_module_and_skips_one_that_fails(tmp_path: Path) -> None:
    modules = tmp_path / "modules.json"
    modules.write_text(json.dumps(["colorsys", "no_such_module_here", "email.mime.text"]))
    seconds, listed = import_floor(modules, dict(os.environ))
    assert listed == 3 and seconds > 0
