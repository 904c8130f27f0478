"""Rollout benchmark: swap latency, throughput during swaps, and the cost of shadow mode.

One run trains and registers a model in a temporary folder (`serving.prepare`), registers two
more versions of the same artifact (same source, run and SHA-256, so every swap loads and
verifies a real model), starts the project's service with `bentoml serve` on a free loopback
port and measures, against the targets of issue 3:

1. swap latency: `champion` is moved N times (cycling through the versions, actor "benchmark"),
   each move after a random pause within one poll interval so moves do not phase-lock with the
   service's poll; `/metadata` is read every 50 ms until it serves the new champion. The time
   counts from just before `move_alias` is called to the first `/metadata` showing the version;
2. throughput during swaps: req/s at concurrency 16 with no swaps, then the same load while a
   separate process (as the CLI or Dagster would be) moves `champion` every 1.5 s; the ratio,
   the failed requests (target 0) and whether every response names a version that was champion;
3. shadow cost: p50 latency at concurrency 1 without a shadow, then with `shadow` set (once
   `/metadata` shows it); the ratio.

    python benchmarks/rollout.py                 # full run (about 2 minutes)
    python benchmarks/rollout.py --quick         # short run (under a minute)
    python benchmarks/rollout.py --json out.json # also keep the figures
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import HEADERS, ROOT, free_port, prepare, start, wait_ready, warm_clients

ACTOR = "benchmark"
SPEC_NAME = "credit_default"
SWAP_TARGET_P95_S = 5.0
THROUGHPUT_TARGET = 0.8
SHADOW_TARGET = 1.3
METADATA_EVERY_S = 0.05
MOVE_EVERY_S = 1.5


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def add_versions(name: str, version: str, extra: int) -> list[str]:
    """Register `extra` versions pointing at `version`'s artifact; all versions, in order."""
    from lifecycle_assets import config

    client = _client()
    source = client.get_model_version(name, version)
    # Alias stamps (`champion_since`, ...) describe moves of the original, not of the copies.
    stamps = tuple(
        f"{alias}_"
        for alias in (
            config.CHAMPION_ALIAS,
            config.CHALLENGER_ALIAS,
            config.CANARY_ALIAS,
            config.SHADOW_ALIAS,
        )
    )
    tags = {k: v for k, v in source.tags.items() if not k.startswith(stamps)}
    versions = [str(version)]
    for _ in range(extra):
        created = client.create_model_version(name, source.source, source.run_id, tags=tags)
        versions.append(str(created.version))
    return versions


def move_champion(name: str, version: str) -> None:
    from lifecycle_assets import config
    from lifecycle_assets.registry.aliases import move_alias

    move_alias(
        _client(), name, config.CHAMPION_ALIAS, version, reason="rollout benchmark", actor=ACTOR
    )


def served(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/metadata", timeout=5).json()


def champion_swaps(url: str) -> float:
    """The service's count of champion swaps, from `/metrics`."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("lifecycle_model_swaps_total") and 'role="champion"' in line
    )


def wait_serving(url: str, role: str, version: str, timeout: float) -> float:
    """Seconds until `/metadata` shows `version` in `role`, polled every 50 ms (bounded)."""
    began = time.perf_counter()
    deadline = began + timeout
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.perf_counter() < deadline:
            role_now = client.get("/metadata").json()["serving"].get(role)
            if role_now is not None and role_now["version"] == version:
                return time.perf_counter() - began
            time.sleep(METADATA_EVERY_S)
    raise TimeoutError(f"{role} v{version} not served after {timeout} s")


def wait_serving_none(url: str, role: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while served(url)["serving"].get(role) is not None:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{role} still served after {timeout} s")
        time.sleep(METADATA_EVERY_S)


def swap_latency(url: str, versions: list[str], moves: int, poll: float) -> dict[str, Any]:
    rng = random.Random(7)
    current = served(url)["serving"]["champion"]["version"]
    cycle = [v for v in versions if v != current] + [current]
    samples, move_s = [], []
    for index in range(moves):
        target = cycle[index % len(cycle)]
        time.sleep(rng.uniform(0, poll))  # de-phase from the service's poll
        began = time.perf_counter()
        move_champion(SPEC_NAME, target)
        moved = time.perf_counter() - began
        seen = wait_serving(url, "champion", target, timeout=30)
        samples.append(moved + seen)
        move_s.append(moved)
    quantiles = statistics.quantiles(samples, n=20, method="inclusive")
    return {
        "moves": moves,
        "poll_seconds": poll,
        "p50_s": statistics.median(samples),
        "p95_s": quantiles[18],
        "max_s": max(samples),
        "min_s": min(samples),
        "move_alias_p50_s": statistics.median(move_s),
        "samples_s": samples,
    }


async def drive(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    count: int,
    seconds: float,
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Like `serving.load`, but keeps each response's version and counts failures, not raises.

    (`serving.load` returns aggregates only and lets a connection error end the run, and this
    benchmark needs both the answered versions and every failure counted.)
    """
    latencies: list[float] = []
    versions: Counter[str] = Counter()
    variants: Counter[str] = Counter()
    failures: list[str] = []
    issued = 0
    clients = await warm_clients(url, concurrency, bodies[0])
    try:
        if on_start is not None:
            on_start()
        deadline = time.perf_counter() + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal issued
            while issued < count and time.perf_counter() < deadline:
                body = bodies[issued % len(bodies)]
                issued += 1
                began = time.perf_counter()
                try:
                    response = await client.post("/predict", content=body, headers=HEADERS)
                except httpx.HTTPError as error:
                    failures.append(f"{type(error).__name__}: {error}")
                    continue
                latencies.append(time.perf_counter() - began)
                if response.status_code != 200:
                    failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                for row in response.json()["predictions"]:
                    versions[row["model_version"]] += 1
                    variants[row["variant"]] += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        elapsed = time.perf_counter() - began
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * statistics.quantiles(latencies, n=100)[98],
        "n": len(latencies),
        "failed": len(failures),
        "failures": failures[:10],
        "versions": dict(versions),
        "variants": dict(variants),
    }


def mover_main(versions: list[str], every: float, moves: int) -> None:
    """Child process: after `go` on stdin, move `champion` every `every` s; print each move."""
    # Import and connect before `go`: importing mlflow takes seconds of CPU, which would land on
    # the measured window and delay the first move.
    from lifecycle_assets.registry.aliases import move_alias  # noqa: F401

    _client().get_registered_model(SPEC_NAME)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    began = time.perf_counter()
    for index in range(moves):
        time.sleep(max(0.0, began + (index + 1) * every - time.perf_counter()))
        target = versions[index % len(versions)]
        move_champion(SPEC_NAME, target)
        print(json.dumps({"t": time.perf_counter() - began, "version": target}), flush=True)


def throughput(
    url: str, bodies: list[bytes], versions: list[str], seconds: float, env: dict[str, str]
) -> dict[str, Any]:
    steady = asyncio.run(drive(url, bodies, 16, 10**6, seconds))
    current = served(url)["serving"]["champion"]["version"]
    cycle = [v for v in versions if v != current] + [current]
    moves = max(1, int(seconds / MOVE_EVERY_S))
    command = [
        sys.executable, __file__, "--mover", ",".join(cycle),
        "--mover-every", str(MOVE_EVERY_S), "--mover-moves", str(moves),
    ]  # fmt: skip
    mover = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert mover.stdin is not None and mover.stdout is not None
    try:
        if mover.stdout.readline().strip() != "ready":
            raise RuntimeError("the alias mover did not start")

        def go() -> None:
            mover.stdin.write("go\n")
            mover.stdin.flush()

        swaps_before = champion_swaps(url)
        during = asyncio.run(drive(url, bodies, 16, 10**6, seconds, on_start=go))
        swaps_during = champion_swaps(url) - swaps_before
        out, _ = mover.communicate(timeout=60)
    finally:
        if mover.poll() is None:
            mover.kill()
            mover.wait()
    moved = [json.loads(line) for line in out.splitlines() if line.strip()]
    # Let the service catch up with the last move so the next phase starts settled.
    settle_s = wait_serving(url, "champion", moved[-1]["version"], timeout=30)
    # Steady, during, steady again: the baseline is the mean of both steady phases.
    after = asyncio.run(drive(url, bodies, 16, 10**6, seconds))
    baseline = (steady["rps"] + after["rps"]) / 2
    champions = {current, *(m["version"] for m in moved)}
    strangers = sorted(set(during["versions"]) - champions)
    return {
        "concurrency": 16,
        "seconds": seconds,
        "steady": steady,
        "during": during,
        "moves": moved,
        "moves_in_window": sum(m["t"] <= seconds for m in moved),
        "service_swaps_in_window": swaps_during,
        "settle_s": settle_s,
        "steady_after": after,
        "steady_rps": baseline,
        "ratio": during["rps"] / baseline,
        "failed": during["failed"] + steady["failed"] + after["failed"],
        "non_champion_versions": strangers,
        "non_champion_variants": sorted(set(during["variants"]) - {"champion"}),
    }


def shadow_cost(url: str, bodies: list[bytes], versions: list[str], count: int) -> dict[str, Any]:
    from lifecycle_assets.registry.canary import clear_shadow, set_shadow

    without = asyncio.run(drive(url, bodies, 1, count, 120))
    champion = served(url)["serving"]["champion"]["version"]
    shadow = next(v for v in versions if v != champion)
    set_shadow(_client(), SPEC_NAME, shadow, reason="rollout benchmark", actor=ACTOR)
    wait_serving(url, "shadow", shadow, timeout=30)
    try:
        with_shadow = asyncio.run(drive(url, bodies, 1, count, 120))
        skipped = served(url).get("shadow_skipped", {})
    finally:
        clear_shadow(_client(), SPEC_NAME, reason="rollout benchmark done", actor=ACTOR)
    # Without, with, without again: the baseline is the mean of both, so a drift of the shared
    # machine's load during the run does not land on one side only.
    wait_serving_none(url, "shadow", timeout=30)
    after = asyncio.run(drive(url, bodies, 1, count, 120))
    baseline = (without["p50_ms"] + after["p50_ms"]) / 2
    return {
        "requests": count,
        "shadow_version": shadow,
        "without": without,
        "with": with_shadow,
        "without_after": after,
        "baseline_p50_ms": baseline,
        "ratio": with_shadow["p50_ms"] / baseline,
        "shadow_skipped": skipped,
    }


def report(results: dict[str, Any]) -> bool:
    swap, thr, sh = results["swap"], results["throughput"], results["shadow"]
    print(
        f"\nswap latency: {swap['moves']} moves, service poll {swap['poll_seconds']:g} s, "
        f"/metadata read every {1000 * METADATA_EVERY_S:.0f} ms; "
        f"move_alias itself p50 {swap['move_alias_p50_s']:.3f} s"
    )
    print(
        f"throughput at conc 16: steady {thr['steady']['rps']:.0f} req/s "
        f"(p50 {thr['steady']['p50_ms']:.1f} ms) before, {thr['steady_after']['rps']:.0f} after, "
        f"during swaps {thr['during']['rps']:.0f} req/s "
        f"(p50 {thr['during']['p50_ms']:.1f} ms, p99 {thr['during']['p99_ms']:.1f} ms), "
        f"{thr['moves_in_window']} moves in window (every {MOVE_EVERY_S:g} s), "
        f"{thr['service_swaps_in_window']:.0f} swaps by the service, versions answered "
        f"{thr['during']['versions']}"
    )
    print(
        f"shadow at conc 1, {sh['requests']} requests: p50 {sh['without']['p50_ms']:.2f} ms "
        f"without, {sh['with']['p50_ms']:.2f} ms with shadow v{sh['shadow_version']}, "
        f"{sh['without_after']['p50_ms']:.2f} ms without again; "
        f"shadow skipped {sh['shadow_skipped']}\n"
    )
    rows = [
        ("swap latency p50 (s)", f"{swap['p50_s']:.2f}", "", None),
        ("swap latency p95 (s)", f"{swap['p95_s']:.2f}", f"< {SWAP_TARGET_P95_S:g}",
         swap["p95_s"] < SWAP_TARGET_P95_S),
        ("swap latency max (s)", f"{swap['max_s']:.2f}", "", None),
        ("throughput during/steady", f"{thr['ratio']:.2f}", f">= {THROUGHPUT_TARGET:g}",
         thr["ratio"] >= THROUGHPUT_TARGET),
        ("failed requests", f"{thr['failed']}", "0", thr["failed"] == 0),
        ("non-champion versions", ",".join(thr["non_champion_versions"]) or "none", "none",
         not thr["non_champion_versions"] and not thr["non_champion_variants"]),
        ("shadow p50 with/without", f"{sh['ratio']:.2f}", f"< {SHADOW_TARGET:g}",
         sh["ratio"] < SHADOW_TARGET),
    ]  # fmt: skip
    header = f"{'metric':<26}{'value':>10}{'target':>10}  result"
    print(header)
    print("-" * len(header))
    for metric, value, target, ok in rows:
        verdict = "" if ok is None else ("pass" if ok else "FAIL")
        print(f"{metric:<26}{value:>10}{target:>10}  {verdict}")
    return all(ok for *_, ok in rows if ok is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--mover", help=argparse.SUPPRESS)
    parser.add_argument("--mover-every", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--mover-moves", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mover:
        mover_main(args.mover.split(","), args.mover_every, args.mover_moves)
        return
    moves, seconds, shadow_requests = (6, 4.5, 150) if args.quick else (20, 8.0, 400)
    poll = float(os.environ.get("LIFECYCLE_REGISTRY_POLL_SECONDS") or 2.0)
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        env, records = prepare(Path(tmp))
        env["LIFECYCLE_REGISTRY_POLL_SECONDS"] = str(poll)
        champion = _client().get_model_version_by_alias(SPEC_NAME, "champion").version
        versions = add_versions(SPEC_NAME, champion, extra=2)
        bodies = [json.dumps({"records": [r]}).encode() for r in records]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = start("bentoml", port, env, Path(tmp))
        try:
            wait_ready(url, process)
            results = {
                "versions": versions,
                "swap": swap_latency(url, versions, moves, poll),
                "throughput": throughput(url, bodies, versions, seconds, env),
                "shadow": shadow_cost(url, bodies, versions, shadow_requests),
                "refused": served(url).get("refused", []),
            }
        finally:
            process.terminate()
            process.wait(timeout=30)
    ok = report(results)
    if results["refused"]:
        print(f"refused by the service: {results['refused']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
