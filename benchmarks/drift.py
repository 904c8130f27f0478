"""Drift benchmark: our profile-based report against a numpy/scipy loop and Evidently.

One run generates seeded data with numpy (a reference and a current window of 20 numeric
features, 3 of them shifted), writes both to Parquet in a temporary folder, and runs, each in its
own process so that each peak RSS is its own:

- ours: `build_profile` on the reference (training-time work, timed apart), then `drift_report`
  on `pl.scan_parquet(current)`: the timing includes reading the window;
- baseline: numpy PSI on reference deciles plus `scipy.stats.ks_2samp` per feature on raw rows;
- Evidently's `DataDriftPreset`, in a separate venv (Evidently is not a project dependency):
  created on first use under `benchmarks/.venv-evidently` (gitignored) and reused after.

Timings start after the imports and include reading the Parquet files each method needs.

    python benchmarks/drift.py             # 1,000,000 + 1,000,000 rows (about 3 minutes)
    python benchmarks/drift.py --quick     # 100,000 + 100,000 rows
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path(__file__).resolve().parent / ".venv-evidently"
# evidently 0.7.23 imports a pandas internal that pandas 3 removed.
EVIDENTLY_REQUIREMENTS = ["evidently==0.7.23", "pandas==2.3.3", "pyarrow"]
FEATURES = 20
SHIFTED = ("f03", "f07", "f16")
SEED = 20260301


def generate(rows: int, folder: Path) -> None:
    """Write reference.parquet and current.parquet: varied shapes, 3 features shifted in current."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(SEED)

    def column(index: int, shifted: bool, n: int) -> np.ndarray:
        kind = index % 5
        if kind == 0:
            values = rng.normal(10 * index, 1 + index, n) + (0.5 * (1 + index) if shifted else 0)
        elif kind == 1:
            values = rng.lognormal(1 + 0.1 * index, 0.5, n) * (1.5 if shifted else 1.0)
        elif kind == 2:
            values = rng.gamma(2.0, (1.5 if shifted else 1.0) * (1 + index), n)
        elif kind == 3:
            values = rng.normal(0, 1, n) + (0.5 if shifted else 0.0)
        else:
            values = rng.poisson(3 + index, n).astype(np.float64)
        if index in (0, 5):  # a little missingness, the same in both windows
            values[rng.random(n) < 0.02] = np.nan
        return values

    for name, shift in (("reference", False), ("current", True)):
        frame = {
            f"f{i:02d}": column(i, shift and f"f{i:02d}" in SHIFTED, rows) for i in range(FEATURES)
        }
        pl.DataFrame(frame).write_parquet(folder / f"{name}.parquet")


def _peak_mib() -> float:
    """This process's own peak RSS (VmHWM), in MiB.

    Not `getrusage`: Linux carries `ru_maxrss` over from the forked copy of the parent across
    exec, so a child of a large parent would report the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB, not Linux


def worker_profile(folder: Path) -> dict[str, Any]:
    import polars as pl

    from lifecycle_assets.ml.profile import build_profile

    start = time.perf_counter()
    reference = pl.read_parquet(folder / "reference.parquet")
    profile = build_profile(reference, None, reference.columns, [])
    (folder / "profile.json").write_text(json.dumps(profile.to_dict()))
    seconds = time.perf_counter() - start
    size = (folder / "profile.json").stat().st_size
    return {"seconds": seconds, "peak_mib": _peak_mib(), "profile_bytes": size}


def worker_ours(folder: Path) -> dict[str, Any]:
    import polars as pl

    from lifecycle_assets.config import DriftThresholds
    from lifecycle_assets.ml.drift import drift_report
    from lifecycle_assets.ml.profile import ReferenceProfile

    start = time.perf_counter()
    profile = ReferenceProfile.from_dict(json.loads((folder / "profile.json").read_text()))
    report = drift_report(pl.scan_parquet(folder / "current.parquet"), profile, DriftThresholds())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": _peak_mib(), "flagged": report.drifted_features}


def worker_baseline(folder: Path) -> dict[str, Any]:
    """The straightforward way: raw rows of both windows, PSI on deciles, ks_2samp per column."""
    import numpy as np
    import polars as pl
    from scipy import stats

    from lifecycle_assets.config import DriftThresholds

    t = DriftThresholds()
    start = time.perf_counter()
    reference = pl.read_parquet(folder / "reference.parquet")
    current = pl.read_parquet(folder / "current.parquet")
    flagged = []
    for name in reference.columns:
        ref = reference[name].drop_nulls().drop_nans().to_numpy()
        cur = current[name].drop_nulls().drop_nans().to_numpy()
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11))[1:-1])
        p = np.bincount(np.searchsorted(edges, ref), minlength=edges.size + 1) / ref.size
        q = np.bincount(np.searchsorted(edges, cur), minlength=edges.size + 1) / cur.size
        p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
        psi = float(np.sum((q - p) * np.log(q / p)))
        ks = stats.ks_2samp(ref, cur)
        if ks.pvalue <= t.p_value and (psi >= t.psi or ks.statistic >= t.ks_statistic):
            flagged.append(name)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": _peak_mib(), "flagged": flagged}


def worker_evidently(folder: Path) -> dict[str, Any]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    start = time.perf_counter()
    reference = pd.read_parquet(folder / "reference.parquet")
    current = pd.read_parquet(folder / "current.parquet")
    read = time.perf_counter() - start
    definition = DataDefinition(numerical_columns=list(reference.columns))
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    flagged = []
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        # Distances drift above their threshold, p-values below it.
        is_p_value = "p_value" in config["method"].lower()
        value, limit = metric["value"], config["threshold"]
        if (value < limit) if is_p_value else (value >= limit):
            flagged.append(config["column"])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "read_seconds": read, "peak_mib": _peak_mib(), "flagged": flagged}


def worker_generate(folder: Path, rows: int) -> dict[str, Any]:
    generate(rows, folder)
    return {"rows": rows}


WORKERS = {
    "generate": worker_generate,
    "profile": worker_profile,
    "ours": worker_ours,
    "baseline": worker_baseline,
    "evidently": worker_evidently,
}


def run_worker(python: Path | str, name: str, folder: Path, rows: int = 0) -> dict[str, Any]:
    """Run one worker in a fresh process and return the JSON it printed last."""
    command = [str(python), __file__, "--worker", name, "--dir", str(folder), "--rows", str(rows)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def evidently_python(venv: Path) -> Path | None:
    """The Evidently venv's python, created on first use; None (with the reason) if impossible."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import evidently, pyarrow"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} with {' '.join(EVIDENTLY_REQUIREMENTS)} ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", *EVIDENTLY_REQUIREMENTS],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"cannot install Evidently, skipping it:\n{done.stderr[-2000:]}")
            return None
    return python if subprocess.run(check, capture_output=True).returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows per window")
    parser.add_argument("--rows", type=int, help="rows per window (default 1,000,000)")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--evidently-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work = WORKERS[args.worker]
        result = work(args.dir, args.rows) if args.worker == "generate" else work(args.dir)
        print(json.dumps(result))
        return

    rows = args.rows or (100_000 if args.quick else 1_000_000)
    python = None if args.skip_evidently else evidently_python(args.evidently_venv)
    results: dict[str, Any] = {"rows": rows, "features": FEATURES, "shifted": list(SHIFTED)}
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        folder = Path(tmp)
        # In a child too: the parent stays small, so nothing large is forked into the workers.
        run_worker(sys.executable, "generate", folder, rows)
        results["profile"] = run_worker(sys.executable, "profile", folder)
        results["ours"] = run_worker(sys.executable, "ours", folder)
        results["baseline"] = run_worker(sys.executable, "baseline", folder)
        if python is not None:
            results["evidently"] = run_worker(python, "evidently", folder)

    profile = results["profile"]
    print(f"\n{rows:,} reference rows, {rows:,} current rows, {FEATURES} numeric features")
    print(
        f"profile (training time): {profile['seconds']:.2f} s, {profile['peak_mib']:.0f} MiB "
        f"peak, {profile['profile_bytes'] / 1024:.0f} KiB of JSON"
    )
    print(f"{'method':<10} {'seconds':>8} {'peak MiB':>9}  flagged")
    for name in ("ours", "baseline", "evidently"):
        if name in results:
            r = results[name]
            print(f"{name:<10} {r['seconds']:>8.2f} {r['peak_mib']:>9.0f}  {sorted(r['flagged'])}")
    for name in ("baseline", "evidently"):
        if name in results:
            ratio = results[name]["seconds"] / results["ours"]["seconds"]
            print(f"ours is {ratio:.1f}x faster than {name}")
    agree = all(
        sorted(results[n]["flagged"]) == list(SHIFTED)
        for n in ("ours", "baseline", "evidently")
        if n in results
    )
    print("all flag exactly the shifted features:", agree)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
