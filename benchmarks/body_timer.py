"""Time spent inside asset and check bodies, for `benchmarks/lifecycle.py`'s compute figure.

A step's STEP_START -> STEP_SUCCESS span also holds Dagster's own work inside the step: one
materialization event per partition, check-evaluation events, the IO manager's writes, input
loading. Counting that as compute would flatter the overhead share. This module wraps Dagster's
one call into user code (`compute_generator.invoke_compute_fn`): a plain body is timed around
the call, a generator body around each `next()` (the time Dagster spends handling what it
yielded is not counted). The benchmark runs `lifecycle run` with this installed, in the same
process and code path as a user's run; the totals go to the JSON file named by `ENV_OUT` at exit.
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

ENV_OUT = "BENCH_BODY_TIMES"


def _timed_generator(body: Iterator[Any], add: Callable[[float], None]) -> Iterator[Any]:
    try:
        while True:
            started = time.perf_counter()
            try:
                item = next(body)
            except StopIteration as stop:
                add(time.perf_counter() - started)
                return stop.value
            add(time.perf_counter() - started)
            yield item
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def install(out: str | None = None) -> dict[str, float]:
    """Wrap Dagster's call into asset bodies; returns the live per-op totals (seconds)."""
    from dagster._core.execution.plan import compute_generator

    totals: dict[str, float] = defaultdict(float)
    original = compute_generator.invoke_compute_fn

    def timed(fn: Callable[..., Any], context: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(getattr(context, "op_def", None), "name", None) or fn.__name__

        def add(seconds: float) -> None:
            totals[name] += seconds

        started = time.perf_counter()
        result = original(fn, context, *args, **kwargs)
        add(time.perf_counter() - started)
        if inspect.isgenerator(result):
            return _timed_generator(result, add)
        return result

    compute_generator.invoke_compute_fn = timed
    path = out or os.environ.get(ENV_OUT)
    if path:
        atexit.register(_write, path, totals)
    return totals


def _write(path: str, totals: dict[str, float]) -> None:
    with open(path, "w") as out:
        out.write(json.dumps(dict(totals), indent=2))


def main() -> None:
    """`lifecycle` with the timer installed (argv as the `lifecycle` script gets it)."""
    install()
    from lifecycle_assets.cli import main as lifecycle

    lifecycle()


if __name__ == "__main__":
    main()
