"""CLI latency benchmark: each command as a user runs it (a fresh process), 5 runs, medians.

Works on a copy of a lifecycle project (the project's `.lifecycle` after `make run` by default,
or `--home DIR`; with `--fresh`, or when there is none, it runs `lifecycle run` into a temporary
folder first), so the project itself is never changed. In the copy it registers a second version
of the first model (the same files) to promote and roll back, and makes one real prediction
through `bentoml serve` when the logs hold none, so `trace` follows a real id. Targets (issue
12): `trace`, `status`, `history`, `lineage` at most 1 s; `promote`, `rollback`, `canary` at
most 2 s.

    python benchmarks/cli.py                 # the project's .lifecycle (or a fresh run)
    python benchmarks/cli.py --runs 3
    python benchmarks/cli.py --compare ../main   # also another checkout, same rounds

With `--compare CHECKOUT`, each command is also run by that checkout's code (on its own copy
of the same project, alternating with this one in every round), and the ratio of the medians is
printed: on a shared machine only a ratio from the same rounds means anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READ_TARGET_S, WRITE_TARGET_S = 1.0, 2.0


def lifecycle_command() -> list[str]:
    script = Path(sys.executable).parent / "lifecycle"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from lifecycle_assets.cli import main; main()"]


def project_env(home: Path, dagster_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LIFECYCLE_"))}
    env.update(
        {
            "LIFECYCLE_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
            "BENTOML_HOME": str(home / "bentoml"),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            "BENTOML_DO_NOT_TRACK": "true",
        }
    )
    return env


def prepare_project(source: Path | None, work: Path, fresh: bool) -> dict[str, str]:
    """A project home under `work`: a copy of `source`, or a fresh `lifecycle run`."""
    home, dagster_home = work / ".lifecycle", work / ".dagster_home"
    if not fresh and source is not None and (source / "mlflow.db").is_file():
        shutil.copytree(source, home, symlinks=True)
        if (source.parent / ".dagster_home").is_dir():
            shutil.copytree(source.parent / ".dagster_home", dagster_home, symlinks=True)
        print(f"benchmarking a copy of {source}")
        return project_env(home, dagster_home)
    dagster_home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = project_env(home, dagster_home)
    print("no project to copy: running `lifecycle run` first (a few minutes)", flush=True)
    subprocess.run([*lifecycle_command(), "run"], cwd=ROOT, env=env, check=False)
    return env


def second_version(env: dict[str, str]) -> tuple[str, str, str]:
    """The first model's name, its champion version and a new version of the same files."""
    os.environ.update(env)
    from mlflow import MlflowClient

    from lifecycle_assets import config
    from lifecycle_assets.config import Settings
    from lifecycle_assets.registry.refs import get_version, resolve
    from lifecycle_assets.registry.tracking import configure_mlflow
    from lifecycle_assets.spec import configured_specs

    client = configure_mlflow(Settings.from_env())
    name = configured_specs()[0].name
    champion = resolve(client, name, config.CHAMPION_ALIAS)
    if champion is None:
        raise SystemExit(f"{name} has no champion in the benchmarked project")
    created = MlflowClient().create_model_version(
        name, champion.source, champion.run_id, tags=champion.tags
    )
    return name, champion.version, get_version(client, name, str(created.version)).version


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def logged_prediction_id(home: Path) -> str | None:
    for path in sorted((home / "prediction_logs").rglob("*")):
        if path.is_file() and (path.suffix in (".jsonl", ".log") or ".log." in path.name):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("prediction_id") and not row.get("shadow_of"):
                    return str(row["prediction_id"])
    return None


def make_prediction(env: dict[str, str], name: str, work: Path) -> str:
    """One real prediction through `bentoml serve` (so its log row exists); its id."""
    from lifecycle_assets.data.simulator import simulate_day
    from lifecycle_assets.spec import configured_specs

    spec = next(s for s in configured_specs() if s.name == name)
    columns = [f.name for f in spec.features] + ([spec.id_column] if spec.id_column else [])
    records = simulate_day(spec.start_date, rows_per_day=5).select(columns).to_dicts()
    body = json.dumps({"records": records}, default=str).encode()
    port = free_port()
    service = "lifecycle_assets.serving.service:PredictionService"
    command = [sys.executable, "-m", "bentoml", "serve", service, "--port", str(port)]
    with open(work / "serve.log", "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    with urllib.request.urlopen(f"{url}/readyz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.2)
            request = urllib.request.Request(
                f"{url}/models/{name}/predict", body, {"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
            time.sleep(1.0)  # the log is written after the answer
        finally:
            process.terminate()
            process.wait(timeout=60)
    return str(answer["predictions"][0]["prediction_id"])


def timed(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[float, int]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:  # a command that fails fast must not pass as fast
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        print(f"  {' '.join(command[-4:])}: exit {result.returncode} {tail}")
    return elapsed, result.returncode


def load_average() -> str:
    """1, 5 and 15 minute load averages: how shared the machine was while timing."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def compare_copy(env: dict[str, str], work: Path, checkout: Path) -> dict[str, str]:
    """A second copy of the prepared project, run by `checkout`'s code."""
    home = Path(env["LIFECYCLE_HOME"])
    other = work / "compare"
    shutil.copytree(home, other / ".lifecycle", symlinks=True)
    shutil.copytree(Path(env["DAGSTER_HOME"]), other / ".dagster_home", symlinks=True)
    copied = project_env(other / ".lifecycle", other / ".dagster_home")
    # MLflow's SQLite store and the ledger name absolute paths only through the settings.
    return {**copied, "PYTHONPATH": str(checkout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".lifecycle")
    parser.add_argument("--fresh", action="store_true", help="run `lifecycle run` first")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--compare", type=Path, default=None, metavar="CHECKOUT",
        help="also time another checkout's code (its own copy), alternating in every round",
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as tmp:
        work = Path(tmp)
        env = prepare_project(args.home, work, args.fresh)
        name, v1, v2 = second_version(env)
        home = Path(env["LIFECYCLE_HOME"])
        prediction_id = logged_prediction_id(home) or make_prediction(env, name, work)
        env = {**env, "PYTHONPATH": str(ROOT)}  # this checkout's code, whatever is installed
        sides = {"this": (env, ROOT)}
        if args.compare is not None:
            checkout = args.compare.resolve()
            sides["compare"] = (compare_copy(env, work, checkout), checkout)
        cli = lifecycle_command()
        unreachable = "http://127.0.0.1:9"  # nothing listens: status reports it at once
        commands: list[tuple[str, float, list[str]]] = [
            ("--help", READ_TARGET_S, ["--help"]),
            ("trace", READ_TARGET_S, ["trace", prediction_id, "--json"]),
            ("status", READ_TARGET_S, ["status", name, "--service-url", unreachable]),
            ("history", READ_TARGET_S, ["history", name]),
            ("lineage", READ_TARGET_S, ["lineage", name, v1, "--out", str(work / "l.json")]),
            ("promote", WRITE_TARGET_S, ["promote", name, v2, "--reason", "bench"]),
            ("rollback", WRITE_TARGET_S, ["rollback", name, "--reason", "bench"]),
            ("canary", WRITE_TARGET_S, ["canary", name, v2, "--weight", "0.1"]),
            ("canary --clear", WRITE_TARGET_S, ["canary", name, "--clear"]),
        ]
        times = {side: {label: [] for label, _, _ in commands} for side in sides}
        failed: set[str] = set()  # commands of this checkout that exited non-zero
        print(f"load average before: {load_average()}", flush=True)
        for run in range(args.runs):
            for label, _, arguments in commands:
                for side, (side_env, cwd) in sides.items():
                    elapsed, code = timed([*cli, *arguments], side_env, cwd)
                    if code != 0 and side == "this":
                        failed.add(label)
                    times[side][label].append(elapsed)
            for side, by_label in times.items():
                latest = ", ".join(f"{k} {v[-1]:.2f}s" for k, v in by_label.items())
                print(f"run {run + 1} ({side}): {latest}", flush=True)
        print(f"load average after: {load_average()}")
        print(f"\nmedians over {args.runs} runs (each command a fresh process):")
        failures = 0
        for label, target, _ in commands:
            median = statistics.median(times["this"][label])
            ok = median <= target and label not in failed
            failures += not ok
            verdict = "PASS" if ok else "FAIL" if label not in failed else "EXIT"
            line = f"  {verdict}  {label:<16}{median:>7.2f} s  (target <= {target:.0f} s)"
            if "compare" in times:
                before = statistics.median(times["compare"][label])
                line += f"   compare {before:>7.2f} s  ({before / median:.1f}x faster)"
            print(line)
        print(f"\n{len(commands) - failures}/{len(commands)} within target")


if __name__ == "__main__":
    main()
