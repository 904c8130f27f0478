"""Serving benchmark: our BentoML service against a bare uvicorn app on the same model.

One run trains and registers a model in a temporary folder, starts (a) the project's service with
`bentoml serve` and (b) a minimal uvicorn + Starlette app that calls the same model through the
same `compute_features`, then drives both with an asyncio httpx client on 127.0.0.1 with
single-record requests at several concurrencies. It prints requests/s, p50 and p99 per level, the
ratios against the uvicorn baseline, and the model's own time per single record (the floor).

    python benchmarks/serving.py            # full run (a few minutes)
    python benchmarks/serving.py --quick    # short run (under a minute)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 16, 64)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(home: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Train and register a champion in `home`; return the env for servers and sample records."""
    env = {
        "LIFECYCLE_HOME": str(home / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "LIFECYCLE_MLFLOW_ARTIFACT_ROOT": (home / "mlartifacts").as_uri(),
        "BENTOML_HOME": str(home / "bentoml"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GIT_PYTHON_REFRESH": "quiet",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    os.environ.update(env)
    import mlflow
    import polars as pl

    from lifecycle_assets import config
    from lifecycle_assets.config import Settings
    from lifecycle_assets.data.simulator import simulate_range
    from lifecycle_assets.ml.features import feature_table
    from lifecycle_assets.ml.training import fit_pipeline, model_input
    from lifecycle_assets.registry.aliases import move_alias
    from lifecycle_assets.registry.models import log_and_register
    from lifecycle_assets.registry.tracking import configure_mlflow
    from lifecycle_assets.spec import default_spec

    spec = default_spec()
    batches = [frame for _, frame in simulate_range(dt.date(2026, 1, 1), 20, seed=42)]
    table = pl.concat([feature_table(frame, spec) for frame in batches])
    settings = Settings.from_env()
    client = configure_mlflow(settings)
    mlflow.set_experiment(settings.mlflow_experiment)
    with mlflow.start_run():
        ref = log_and_register(
            fit_pipeline(table, spec),
            spec,
            input_example=model_input(table, spec),
            version_tags={config.TAG_TRAINING_DIGEST: "benchmark"},
        )
    move_alias(client, spec.name, config.CHAMPION_ALIAS, ref.version, reason="bench", actor="bench")
    columns = [f.name for f in spec.features] + [spec.id_column]
    records = batches[-1].select(columns).head(200).to_dicts()
    return env, records


def model_floor(records: list[dict[str, Any]], repeats: int) -> dict[str, float]:
    """Median seconds per single record: predict_scores alone, and with compute_features."""
    import polars as pl

    from lifecycle_assets.ml.features import compute_features
    from lifecycle_assets.ml.training import predict_scores
    from lifecycle_assets.serving.model_source import load_served_model

    loaded = load_served_model().loaded
    spec = loaded.spec
    frames = [pl.DataFrame([r]) for r in records[:repeats]]
    features = [compute_features(frame, spec) for frame in frames]
    timings: dict[str, list[float]] = {"predict_scores": [], "features+predict": []}
    for frame, feats in zip(frames, features, strict=True):
        start = time.perf_counter()
        predict_scores(loaded.pipeline, feats, spec)
        timings["predict_scores"].append(time.perf_counter() - start)
        start = time.perf_counter()
        predict_scores(loaded.pipeline, compute_features(frame, spec), spec)
        timings["features+predict"].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in timings.items()}


def baseline_app():
    """The bare app: parse, same feature code, same model; no validation, no logging."""
    import polars as pl
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from lifecycle_assets.ml.features import compute_features
    from lifecycle_assets.ml.training import predict_scores
    from lifecycle_assets.serving.model_source import load_served_model

    loaded = load_served_model().loaded
    spec = loaded.spec
    schema = {f.name: pl.Float64 if f.type == "numeric" else pl.String for f in spec.features}

    async def predict(request: Request) -> JSONResponse:
        records = json.loads(await request.body())["records"]
        frame = pl.DataFrame([{k: r.get(k) for k in schema} for r in records], schema=schema)
        probabilities = predict_scores(loaded.pipeline, compute_features(frame, spec), spec)
        return JSONResponse(
            {
                "predictions": [
                    {"probability": p, "prediction": int(p >= 0.5), "id": uuid.uuid4().hex}
                    for p in probabilities.tolist()
                ]
            }
        )

    async def livez(_: Request) -> JSONResponse:
        return JSONResponse({})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", livez)])


def serve_baseline(port: int) -> None:
    import uvicorn

    uvicorn.run(baseline_app(), host="127.0.0.1", port=port, log_level="warning")


def start(kind: str, port: int, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    if kind == "bentoml":
        command = [
            sys.executable, "-m", "bentoml", "serve",
            "lifecycle_assets.serving.service:PredictionService",
            "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
    else:
        command = [sys.executable, __file__, "--serve-baseline", str(port)]
    log = open(logs / f"{kind}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout} s")


HEADERS = {"content-type": "application/json"}


async def warm_clients(url: str, concurrency: int, body: bytes) -> list[httpx.AsyncClient]:
    """One `AsyncClient` per simulated client, each with one connection, opened and warmed.

    A single shared client with a 64-connection pool measured about 110 req/s against an empty
    endpoint on this machine (its pool, not the server, was the bottleneck); one client per
    connection about 1,200 req/s.
    """
    clients = [
        httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1), timeout=30)
        for _ in range(concurrency)
    ]
    for _ in range(3):  # open every connection and let the server settle
        await asyncio.gather(*(c.post("/predict", content=body, headers=HEADERS) for c in clients))
    return clients


async def load(
    url: str, bodies: list[bytes], concurrency: int, count: int, seconds: float
) -> dict[str, float]:
    """`count` requests (or `seconds`, whichever ends first) from `concurrency` clients."""
    latencies: list[float] = []
    errors = 0
    issued = 0
    clients = await warm_clients(url, concurrency, bodies[0])
    try:
        deadline = time.perf_counter() + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal issued, errors
            while issued < count and time.perf_counter() < deadline:
                body = bodies[issued % len(bodies)]
                issued += 1
                start = time.perf_counter()
                response = await client.post("/predict", content=body, headers=HEADERS)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        elapsed = time.perf_counter() - began
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * quantiles[98],
        "n": len(latencies),
        "errors": errors,
    }


def report(results: dict[str, dict[int, dict[str, float]]], floor: dict[str, float]) -> None:
    predict_ms, both_ms = 1000 * floor["predict_scores"], 1000 * floor["features+predict"]
    print(f"\nmodel floor per single record: predict_scores {predict_ms:.2f} ms, "
          f"compute_features+predict_scores {both_ms:.2f} ms\n")  # fmt: skip
    header = f"{'server':<10}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'n':>7}{'err':>5}"
    print(header)
    print("-" * len(header))
    for kind, levels in results.items():
        for level, r in levels.items():
            print(f"{kind:<10}{level:>5}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                  f"{r['n']:>7.0f}{r['errors']:>5.0f}")  # fmt: skip
    print("\nratios (bentoml / uvicorn):")
    for level in results["bentoml"]:
        ours, base = results["bentoml"][level], results["uvicorn"][level]
        print(f"  conc {level:>3}: throughput {ours['rps'] / base['rps']:.2f}x, "
              f"p50 {ours['p50_ms'] / base['p50_ms']:.2f}x, "
              f"p99 {ours['p99_ms'] / base['p99_ms']:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--serve-baseline", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    count, seconds = (400, 4.0) if args.quick else (3000, 20.0)
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        env, records = prepare(Path(tmp))
        bodies = [json.dumps({"records": [r]}).encode() for r in records]
        floor = model_floor(records, 50 if args.quick else 200)
        results: dict[str, dict[int, dict[str, float]]] = {}
        for kind in ("uvicorn", "bentoml"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = start(kind, port, env, Path(tmp))
            try:
                wait_ready(url, process)
                results[kind] = {
                    level: asyncio.run(load(url, bodies, level, count, seconds)) for level in LEVELS
                }
            finally:
                process.terminate()
                process.wait(timeout=30)
        report(results, floor)
        if args.json:
            args.json.write_text(json.dumps({"floor": floor, "results": results}, indent=2))


if __name__ == "__main__":
    main()
