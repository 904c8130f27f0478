"""Lifecycle benchmark: how much of `lifecycle run` is compute, at 1x, 10x and 100x the rows.

Each size runs the default project's `lifecycle run` (both built-in models) as a user runs it:
one fresh process, in a fresh temporary LIFECYCLE_HOME and DAGSTER_HOME (the project's
embedded `dagster.yaml`). The size is the simulator's `source.simulator.rows_per_day` in the
spec: the built-in specs are copied with that knob multiplied and named by LIFECYCLE_SPECS, so
no code path differs from a user's run.

Measured per size:
- wall: from starting the process to its exit;
- compute: the time spent inside asset and check bodies (the data and ML work), timed by
  `body_timer` around Dagster's one call into user code (each `next()` of a generator body);
  everything else is overhead: imports, run creation, event writes, the IO manager, the CLI's
  own bookkeeping, and the set-up `lifecycle run` does in a thread beside its first ingest
  (its CPU seconds inside a body's span are taken out of that body's compute);
- step time: the sum over every step of STEP_START -> STEP_SUCCESS / STEP_FAILURE from the
  event log, shown beside compute: it also holds Dagster's work inside a step (a
  materialization event per partition, check events, IO manager writes), so using it as
  compute would flatter the overhead share;
- CPU: user + system seconds of the process tree (getrusage of the waited children), shown
  beside compute as a cross-check (it also counts imports and event writes);
- peak memory: the highest summed RSS of the process tree, polled every 0.2 s with psutil;
- the import floor (at the sizes with an overhead target): the seconds a fresh interpreter
  takes to import the third-party modules that run loaded, in the order it loaded them (median
  of 3; its start-up and exit not counted). No `lifecycle run` in one process can have less
  overhead than that: it shows how much of the overhead target the libraries leave to us.

Targets (issue 12): overhead share (1 - compute / wall) <= 20% at the default size and <= 10%
at 100x; wall at 100x <= 1.5x its compute; peak memory at 100x <= 2 GiB.

    python benchmarks/lifecycle.py                 # 1x, 10x, 100x (100x takes minutes, ~2 GiB)
    python benchmarks/lifecycle.py --sizes 1,10
    python benchmarks/lifecycle.py --sizes 1 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import yaml
from body_timer import BACKGROUND, ENV_MODULES, ENV_OUT, IMPORTS

from lifecycle_assets.spec import DEFAULT_SPEC_PATHS, ENV_SPECS

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
OVERHEAD_TARGET = {1: 0.20, 100: 0.10}
WALL_OVER_COMPUTE_100X = 1.5
PEAK_100X_BYTES = 2 * GIB
FLOOR_ROUNDS = 3

# Imports the named modules in order (one that fails alone is skipped) and prints the seconds.
FLOOR_SCRIPT = """
import importlib, json, sys, time
names = json.load(open(sys.argv[1]))
started = time.perf_counter()
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(time.perf_counter() - started)
"""


def lifecycle_command() -> list[str]:
    """`lifecycle` with the asset-body timer installed (`body_timer.main`)."""
    return [sys.executable, str(Path(__file__).resolve().parent / "body_timer.py")]


def scaled_specs(folder: Path, factor: int) -> str:
    """The built-in specs with `rows_per_day` times `factor`; the LIFECYCLE_SPECS value."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in DEFAULT_SPEC_PATHS:
        raw = yaml.safe_load(source.read_text())
        simulator = raw["source"]["simulator"]
        simulator["rows_per_day"] = int(simulator["rows_per_day"]) * factor
        path = folder / source.name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        paths.append(str(path))
    return ",".join(paths)


def embedded_env(work: Path) -> dict[str, str]:
    """A fresh embedded project under `work`: no inherited project or MLflow variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LIFECYCLE_"))}
    env.pop("DAGSTER_PG_URL", None)
    dagster_home = work / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env.update(
        {
            "LIFECYCLE_HOME": str(work / "home"),
            "DAGSTER_HOME": str(dagster_home),
            "BENTOML_HOME": str(work / "bentoml"),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            "BENTOML_DO_NOT_TRACK": "true",
        }
    )
    return env


class TreeMemory:
    """Polls the summed RSS of a process and its descendants; keeps the high-water mark."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)


@dataclass
class RunStats:
    """What the Dagster event log says about one `lifecycle run`."""

    runs: int = 0
    run_seconds: float = 0.0
    step_seconds: float = 0.0
    steps: int = 0
    per_job: dict[str, dict[str, float]] = field(default_factory=dict)
    per_step: dict[str, float] = field(default_factory=dict)
    per_body: dict[str, float] = field(default_factory=dict)  # seconds inside each op's body
    imports_in_bodies: float = 0.0  # `import` statements run from bodies: overhead, not compute
    background_in_bodies: float = 0.0  # the set-up thread's CPU inside bodies: overhead
    first_start: float | None = None  # epoch seconds of the first run's start
    last_end: float | None = None  # epoch seconds of the last run's end


def _job_kind(job_name: str) -> str:
    """Jobs grouped by what they do (`credit_default_training` -> `training`)."""
    for kind in ("ingest", "training", "model_card", "monitor", "card"):
        if kind in job_name:
            return kind
    return job_name


def event_log_stats(env: dict[str, str]) -> RunStats:
    """Step durations (STEP_START -> STEP_SUCCESS / STEP_FAILURE) of every run of the instance
    that `env` points at, read in this process after the lifecycle ended."""
    import dagster as dg

    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "DAGSTER_PG_URL")}
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    if "DAGSTER_PG_URL" in env:
        os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
    stats = RunStats()
    job_totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    step_totals: dict[str, float] = defaultdict(float)
    kinds = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
    }
    try:
        with dg.DagsterInstance.get() as instance:
            for record in instance.get_run_records():
                run = record.dagster_run
                kind = _job_kind(run.job_name)
                stats.runs += 1
                job_totals[kind]["runs"] += 1
                if record.start_time and record.end_time:
                    seconds = record.end_time - record.start_time
                    stats.run_seconds += seconds
                    stats.first_start = min(stats.first_start or 1e18, record.start_time)
                    stats.last_end = max(stats.last_end or 0.0, record.end_time)
                    job_totals[kind]["run_s"] += seconds
                started: dict[str, float] = {}
                for entry in instance.all_logs(run.run_id, of_type=kinds):
                    event = entry.dagster_event
                    if event is None or event.step_key is None:
                        continue
                    if event.event_type == dg.DagsterEventType.STEP_START:
                        started[event.step_key] = entry.timestamp
                    elif event.step_key in started:
                        seconds = entry.timestamp - started.pop(event.step_key)
                        stats.step_seconds += seconds
                        stats.steps += 1
                        job_totals[kind]["step_s"] += seconds
                        step_totals[_step_name(event.step_key)] += seconds
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    stats.per_job = {k: dict(v) for k, v in job_totals.items()}
    stats.per_step = dict(sorted(step_totals.items(), key=lambda kv: -kv[1]))
    return stats


def _step_name(step_key: str) -> str:
    """Step keys without the model's name, so both models' steps add up."""
    for prefix in ("credit_default__", "expected_loss__", "credit_default_", "expected_loss_"):
        if step_key.startswith(prefix):
            return step_key[len(prefix) :]
    return step_key


@dataclass
class Measurement:
    label: str
    exit_code: int
    wall_s: float
    started_epoch: float
    compute_s: float  # inside asset and check bodies (body_timer)
    step_s: float  # STEP_START -> STEP_SUCCESS, from the event log
    cpu_s: float
    peak_bytes: int
    stats: RunStats
    import_floor_s: float | None = None  # `import_floor`: None where not measured
    floor_modules: int = 0

    @property
    def overhead(self) -> float:
        return 1.0 - self.compute_s / self.wall_s if self.wall_s else float("nan")


def measure_lifecycle(label: str, env: dict[str, str], cwd: Path, log: Path) -> Measurement:
    """One `lifecycle run` in a fresh process with `env`; its figures."""
    bodies = log.with_suffix(".bodies.json")
    env = {**env, ENV_OUT: str(bodies), ENV_MODULES: str(modules_file(log))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    epoch = time.time()
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            [*lifecycle_command(), "run"], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        with TreeMemory(process.pid) as memory:
            code = process.wait()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = event_log_stats(env)
    per_body = json.loads(bodies.read_text()) if bodies.exists() else {}
    stats.imports_in_bodies = per_body.pop(IMPORTS, 0.0)
    stats.background_in_bodies = per_body.pop(BACKGROUND, 0.0)
    stats.per_body = dict(sorted(per_body.items(), key=lambda kv: -kv[1]))
    compute = sum(per_body.values())
    return Measurement(
        label, code, wall, epoch, compute, stats.step_seconds, cpu, memory.peak, stats
    )


def modules_file(log: Path) -> Path:
    """Where the run writes the third-party modules it imported (`body_timer.ENV_MODULES`)."""
    return log.with_suffix(".modules.json")


def import_floor(modules: Path, env: dict[str, str]) -> tuple[float, int]:
    """Median seconds a fresh interpreter takes to import the modules listed in `modules`, in
    their order (the imports only: its start-up and exit are left out, so the floor is never
    overstated); and how many were listed."""
    names = json.loads(modules.read_text())
    seconds = []
    for _ in range(FLOOR_ROUNDS):
        done = subprocess.run(
            [sys.executable, "-c", FLOOR_SCRIPT, str(modules)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        seconds.append(float(done.stdout.strip().splitlines()[-1]))
    return sorted(seconds)[len(seconds) // 2], len(names)


def outside_runs(m: Measurement) -> tuple[float, float, float]:
    """Seconds outside any Dagster run: before the first (process start, imports, pre-flight),
    between runs (the CLI's own work between jobs), after the last (summary, exit)."""
    if m.stats.first_start is None or m.stats.last_end is None:
        return m.wall_s, 0.0, 0.0
    before = m.stats.first_start - m.started_epoch
    after = m.started_epoch + m.wall_s - m.stats.last_end
    return before, m.wall_s - m.stats.run_seconds - before - after, after


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(size: int, m: Measurement) -> list[str]:
    """Prints one size's figures; returns its target lines."""
    print(
        f"{size:>4}x  exit {m.exit_code}  wall {m.wall_s:7.1f} s  compute {m.compute_s:7.1f} s"
        f"  (step time {m.step_s:.1f} s: {m.stats.steps} steps in {m.stats.runs} runs)"
        f"  cpu {m.cpu_s:7.1f} s"
        f"  overhead {m.overhead:6.1%}  peak {m.peak_bytes / GIB:5.2f} GiB",
        flush=True,
    )
    for kind, totals in sorted(m.stats.per_job.items()):
        print(
            f"        {kind:<12} runs {int(totals.get('runs', 0)):>4}"
            f"  run time {totals.get('run_s', 0.0):7.1f} s"
            f"  steps {totals.get('step_s', 0.0):7.1f} s"
        )
    not_compute = m.stats.imports_in_bodies + m.stats.background_in_bodies
    print(
        f"        inside bodies: {m.compute_s:.1f} s of work"
        f" + {m.stats.imports_in_bodies:.1f} s of imports (overhead)"
        f" + {m.stats.background_in_bodies:.1f} s of the set-up beside the runs (overhead);"
        f" Dagster's share of the steps {m.step_s - m.compute_s - not_compute:.1f} s"
    )
    before, between, after = outside_runs(m)
    print(
        f"        outside any run: {m.wall_s - m.stats.run_seconds:.1f} s (before the first"
        f" {before:.1f}, between runs {between:.1f}, after the last {after:.1f})"
    )
    targets = []
    if size in OVERHEAD_TARGET:
        limit = OVERHEAD_TARGET[size]
        floor = ""
        if m.import_floor_s is not None:
            # The least overhead possible in one process: the compute plus the imports alone.
            best = m.import_floor_s / (m.compute_s + m.import_floor_s)
            floor = f"; the import floor alone would be {best:.1%}"
            print(
                f"        import floor: {m.import_floor_s:.1f} s to import the"
                f" {m.floor_modules} third-party modules this run loaded, in a fresh"
                f" interpreter; the target leaves {limit * m.wall_s:.1f} s for all overhead"
                f" at this wall ({m.wall_s - m.compute_s:.1f} s spent)"
            )
        targets.append(
            f"{_verdict(m.overhead <= limit)}  overhead at {size}x {m.overhead:.1%}"
            f" (target <= {limit:.0%}{floor})"
        )
    if size == 100:
        ratio = m.wall_s / m.compute_s if m.compute_s else float("inf")
        targets.append(
            f"{_verdict(ratio <= WALL_OVER_COMPUTE_100X)}  wall/compute at 100x {ratio:.2f}"
            f" (target <= {WALL_OVER_COMPUTE_100X})"
        )
        targets.append(
            f"{_verdict(m.peak_bytes <= PEAK_100X_BYTES)}  peak at 100x"
            f" {m.peak_bytes / GIB:.2f} GiB (target <= 2 GiB)"
        )
    if m.exit_code not in (0, 3):
        targets.append(f"FAIL  lifecycle run at {size}x exited {m.exit_code}")
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="multiples of rows per day, e.g. 1,10")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    targets: list[str] = []
    results = {}
    for size in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"lifecycle-bench-{size}x-"))
        try:
            env = embedded_env(work)
            env[ENV_SPECS] = scaled_specs(work / "specs", size)
            print(f"{size}x: lifecycle run in {work} (log: {work / 'run.log'})", flush=True)
            m = measure_lifecycle(f"{size}x", env, work, work / "run.log")
            modules = modules_file(work / "run.log")
            if size in OVERHEAD_TARGET and modules.exists():
                m.import_floor_s, m.floor_modules = import_floor(modules, env)
            if m.exit_code not in (0, 3):
                print((work / "run.log").read_text()[-3000:])
            targets += report(size, m)
            results[size] = {
                **{k: v for k, v in asdict(m).items() if k != "stats"},
                "overhead": m.overhead,
                "stats": asdict(m.stats),
            }
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    print()
    for line in targets:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(line.startswith("FAIL") for line in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
