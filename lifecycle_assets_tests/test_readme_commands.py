"""The README's commands work verbatim after `make run` on a fresh project.

A small extractor reads README.md's ```bash blocks and keeps, in order, every line that starts
with `.venv/bin/lifecycle ` or `sed ` (the one file-editing step the README shows). It leaves
out, on purpose and by rule:

- lines with a `<...>` placeholder (`trace <prediction_id>`): the reader fills those in;
- lines ending in `# needs make serve` (`simulate-traffic`): they need the running service;
- lines naming `churn.` files: the reader's own data ("Bring your own data";
  `test_new_user_csv.py` runs that path on a CSV it writes).

Everything else (`make`, `curl`, `export`, team-mode lines) is not a `lifecycle` command and is
not run. The kept lines run one by one through bash, `.venv/bin/lifecycle` replaced by this
venv's entry point, in a fresh project after one `lifecycle run`; each must exit 0.

The project is the default one made small, so the test stays short: the two built-in specs,
same names and columns, with 6 days of 250 rows, 30 boosting rounds and lenient gates, copied to
`lifecycle_assets/specs/` under the working folder, which is where the README's `sed` line reads
the built-in spec from. LIFECYCLE_SERVICE_URL names a port nothing listens on, so `status` and
`retire` meet no service (and never another test's).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lifecycle_assets.spec import DEFAULT_SPEC_PATHS
from lifecycle_assets_tests.small_project import project_env

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[1] / "README.md"
LIFECYCLE = str(Path(sys.executable).with_name("lifecycle"))
RUNNABLE = (".venv/bin/lifecycle ", "sed ")
NEEDS_SERVICE = "# needs make serve"
PLACEHOLDER = re.compile(r"<[^>]+>")
# Commands the README must show and this test must run, so it cannot pass by running nothing.
EXPECTED = {
    "run", "status", "rollback", "promote", "history", "canary", "shadow", "retire",
    "monitor", "simulate", "lineage",
}  # fmt: skip


def readme_commands(text: str) -> list[str]:
    """The runnable lines of the README's ```bash blocks, in order (rules: module docstring)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            line = line.strip()
            if not line.startswith(RUNNABLE):
                continue
            if PLACEHOLDER.search(line) or line.endswith(NEEDS_SERVICE) or "churn." in line:
                continue
            commands.append(line)
    return commands


def _small_default_specs(folder: Path) -> list[Path]:
    out = folder / "lifecycle_assets" / "specs"
    out.mkdir(parents=True)
    paths = []
    for path in DEFAULT_SPEC_PATHS:
        raw = yaml.safe_load(Path(path).read_text())
        raw["source"]["simulator"]["rows_per_day"] = 250
        raw["training"]["window_days"] = 6
        raw["estimator"]["params"]["max_iter"] = 30
        raw.setdefault("gates", {}).update(
            min_roc_auc=0.5,
            min_r2=-1.0,
            max_metric_regression=1.0,
            max_fairness_gap=1.0,
            max_relative_error_gap=10.0,
            min_training_rows=500,
            min_rows_per_split=50,
        )
        paths.append(out / Path(path).name)
        paths[-1].write_text(yaml.safe_dump(raw))
    return paths


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_extractor_keeps_lifecycle_lines_and_leaves_out_the_marked_ones() -> None:
    text = (
        "```bash\n.venv/bin/lifecycle status   # note\nmake serve\n"
        ".venv/bin/lifecycle trace <id>\n"
        ".venv/bin/lifecycle simulate-traffic   # needs make serve\n"
        ".venv/bin/lifecycle run --spec churn.yaml\n```\n```yaml\n.venv/bin/lifecycle x\n```\n"
    )
    assert readme_commands(text) == [".venv/bin/lifecycle status   # note"]


def test_readme_commands_run_after_make_run(tmp_path: Path) -> None:
    commands = readme_commands(README.read_text())
    shown = {c.split()[1] for c in commands if c.startswith(".venv/bin/lifecycle ")}
    assert shown >= EXPECTED, f"README lost commands: {sorted(EXPECTED - shown)}"
    env = project_env(tmp_path / "state")
    env.update(
        PATH=f"{Path(LIFECYCLE).parent}:{os.environ['PATH']}",
        LIFECYCLE_SPECS=",".join(str(p) for p in _small_default_specs(tmp_path)),
        LIFECYCLE_SERVICE_URL=f"http://127.0.0.1:{_closed_port()}",
    )
    first = subprocess.run(
        [LIFECYCLE, "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for command in commands:
        line = command.replace(".venv/bin/lifecycle ", f"{LIFECYCLE} ", 1)
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
