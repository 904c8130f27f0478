"""The README's commands work verbatim after `make run` on a fresh project, with `make serve`.

A small extractor reads README.md's ```bash blocks, joins a command that spans lines (an open
quote: the JSON bodies of the `curl` examples) into one, and keeps, in order, every command that
starts with `.venv/bin/lifecycle `, `sed ` (the one file-editing step the README shows), `printf `
(the label file the README writes for `lifecycle labels`) or `curl `. It leaves out, on purpose
and by rule:

- commands with a `<...>` placeholder other than `<prediction_id>`: the reader fills those in;
- commands naming `churn.` files: the reader's own data ("Bring your own data";
  `test_new_user_csv.py` runs that path on a CSV it writes).

Everything else (`make`, `export`, team-mode lines) is not run. The project is made with one
`lifecycle run`, then served by a real `bentoml serve` of the project's service (what `make serve`
runs) on a free loopback port, and the kept commands run one by one through bash, every one of
them against that service, each of which must exit 0:

- `.venv/bin/lifecycle` is this venv's entry point, and `LIFECYCLE_SERVICE_URL` names the
  service, so `status`, `retire` and the lines marked `# needs make serve` (`simulate-traffic`)
  meet it;
- `http://127.0.0.1:3001` (`make serve`'s address, the CLI's default) in a `curl` URL becomes the
  service's; every `curl` line must fail on an HTTP error (`--fail-with-body`), so a 4xx or 5xx
  answer is a non-zero exit;
- `<prediction_id>` is the first `prediction_id` answered by a README `curl .../predict` line,
  so `trace` follows a prediction this service made.

The registry is polled every 0.5 s instead of 2 s, so the service has followed each alias move
before the next line (`retire` asks it whether v1 is still served).

The project is the default one made small, so the test stays short: the two built-in specs,
same names and columns, with 6 days of 250 rows, 30 boosting rounds and lenient gates, copied to
`lifecycle_assets/specs/` under the working folder, which is where the README's `sed` line reads
the built-in spec from.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lifecycle_assets import config
from lifecycle_assets.spec import DEFAULT_SPEC_PATHS
from lifecycle_assets_tests.small_project import project_env
from lifecycle_assets_tests.test_hot_swap import FAST_POLL
from lifecycle_assets_tests.test_http_service import SERVICE, serving

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[1] / "README.md"
LIFECYCLE = str(Path(sys.executable).with_name("lifecycle"))
RUNNABLE = (".venv/bin/lifecycle ", "sed ", "printf ", "curl ")
PREDICTION_ID = "<prediction_id>"
PLACEHOLDER = re.compile(r"<[^>]+>")
README_URL = config.DEFAULT_SERVICE_URL  # where `make serve` binds, as the README shows it
# Commands the README must show and this test must run, so it cannot pass by running nothing.
EXPECTED = {
    "run", "status", "rollback", "promote", "history", "canary", "shadow", "retire",
    "monitor", "simulate", "lineage", "simulate-traffic", "trace", "labels",
}  # fmt: skip
EXPECTED_ROUTES = {
    "/models", "/models/credit_default/predict", "/models/expected_loss/predict",
    "/models/expected_loss/metadata", "/metrics", "/readyz",
}  # fmt: skip


def shell_commands(block: str) -> list[str]:
    """The block's commands in order; a command whose quote is still open at the end of a line
    goes on over the next lines (joined with their newlines, as bash reads them)."""
    commands, pending = [], ""
    for line in block.splitlines():
        pending = f"{pending}\n{line}" if pending else line.strip()
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote (or a trailing backslash): not finished yet
            continue
        if pending:
            commands.append(pending)
        pending = ""
    return commands


def readme_commands(text: str) -> list[str]:
    """The runnable commands of the README's ```bash blocks, in order (rules: module docstring)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for command in shell_commands(block):
            if not command.startswith(RUNNABLE) or "churn." in command:
                continue
            if PLACEHOLDER.search(command.replace(PREDICTION_ID, "")):
                continue
            commands.append(command)
    return commands


def curl_route(command: str) -> str:
    """The path a README `curl` line asks `make serve`'s address for."""
    found = re.search(re.escape(README_URL) + r"(/[^\s'\"]*)", command)
    assert found, f"a curl line that does not ask {README_URL}: {command}"
    return found.group(1)


def fails_on_http_error(command: str) -> bool:
    """Whether this `curl` exits non-zero on a 4xx or 5xx answer (`-f`, `--fail`, ...)."""
    words = shlex.split(command, comments=True)
    return any(
        w in ("--fail", "--fail-with-body") or re.fullmatch(r"-[a-zA-Z]*f[a-zA-Z]*", w)
        for w in words
    )


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


def test_extractor_keeps_runnable_commands_and_leaves_out_the_marked_ones() -> None:
    text = (
        "```bash\n.venv/bin/lifecycle status   # note\nmake serve\n"
        ".venv/bin/lifecycle trace <id>\n"
        ".venv/bin/lifecycle trace <prediction_id> --json\n"
        ".venv/bin/lifecycle simulate-traffic   # needs make serve\n"
        "curl -sf http://127.0.0.1:3001/x -d '{\"a\":\n  1}'   # the model's\n"
        ".venv/bin/lifecycle run --spec churn.yaml\n```\n```yaml\n.venv/bin/lifecycle x\n```\n"
    )
    assert readme_commands(text) == [
        ".venv/bin/lifecycle status   # note",
        ".venv/bin/lifecycle trace <prediction_id> --json",
        ".venv/bin/lifecycle simulate-traffic   # needs make serve",
        "curl -sf http://127.0.0.1:3001/x -d '{\"a\":\n  1}'   # the model's",
    ]
    assert curl_route(readme_commands(text)[-1]) == "/x"
    assert fails_on_http_error("curl -sf http://x")
    assert fails_on_http_error("curl --fail-with-body x")
    assert not fails_on_http_error("curl -s http://x   # -f")


def test_readme_commands_run_after_make_run_against_make_serve(tmp_path: Path) -> None:
    commands = readme_commands(README.read_text())
    shown = {c.split()[1] for c in commands if c.startswith(".venv/bin/lifecycle ")}
    assert shown >= EXPECTED, f"README lost commands: {sorted(EXPECTED - shown)}"
    curls = [c for c in commands if c.startswith("curl ")]
    routes = {curl_route(c) for c in curls}
    assert routes >= EXPECTED_ROUTES, f"README lost routes: {sorted(EXPECTED_ROUTES - routes)}"
    assert all(fails_on_http_error(c) for c in curls), "a README curl line passes on a 4xx/5xx"
    env = project_env(tmp_path / "state")
    env.update(
        PATH=f"{Path(LIFECYCLE).parent}:{os.environ['PATH']}",
        LIFECYCLE_SPECS=",".join(str(p) for p in _small_default_specs(tmp_path)),
    )
    first = subprocess.run(
        [LIFECYCLE, "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # Two models to load, verify, re-prove compiled and smoke-test: slower than one to be ready.
    with serving(SERVICE, tmp_path, ready_seconds=300, **{**env, **FAST_POLL}) as url:
        env["LIFECYCLE_SERVICE_URL"] = url
        answered: list[str] = []
        for command in commands:
            line = command.replace(".venv/bin/lifecycle ", f"{LIFECYCLE} ", 1)
            line = line.replace(README_URL, url)
            if PREDICTION_ID in line:
                assert answered, f"no README prediction answered before: {command}"
                line = line.replace(PREDICTION_ID, answered[0])
            done = subprocess.run(
                ["bash", "-c", line],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert done.returncode == 0, f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            if command.startswith("curl ") and curl_route(command).endswith("/predict"):
                answered += [p["prediction_id"] for p in json.loads(done.stdout)["predictions"]]


def test_the_readme_lands_its_label_file_as_written(tmp_path: Path) -> None:
    """`lifecycle labels` needs no run and no service: the README's label commands, as written
    (`.venv/bin/lifecycle` being this venv's), land the file they name in the model's label
    folder. They used to name `<labels.csv>`, which a reader cannot run and this test skipped."""
    commands = [
        c
        for c in readme_commands(README.read_text())
        if c.startswith("printf ") or c.startswith(".venv/bin/lifecycle labels ")
    ]
    assert any(c.startswith(".venv/bin/lifecycle labels ") for c in commands), commands
    env = {**os.environ, **project_env(tmp_path / "state")}
    for command in commands:
        line = command.replace(".venv/bin/lifecycle ", f"{LIFECYCLE} ", 1)
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    landed = tmp_path / "state" / "home" / "landing" / "credit_default" / "labels"
    assert [p.name for p in landed.iterdir()] == ["labels-2026-12-01.csv"], done.stdout
    assert "2 label(s), labelled 2026-12-01 .. 2026-12-01, landed in" in done.stdout
