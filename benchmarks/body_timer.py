"""Time spent inside asset and check bodies, for `benchmarks/lifecycle.py`'s compute figure.

A step's STEP_START -> STEP_SUCCESS span also holds Dagster's own work inside the step: one
materialization event per partition, check-evaluation events, the IO manager's writes, input
loading. Counting that as compute would flatter the overhead share. This module wraps Dagster's
one call into user code (`compute_generator.invoke_compute_fn`): a plain body is timed around
the call, a generator body around each `next()` (the time Dagster spends handling what it
yielded is not counted). A module imported for the first time inside a body is not data or ML
work either: the time of `import` statements inside bodies is taken out of compute (a lazy
import moved into an asset must not look like compute). The benchmark runs `lifecycle run` with
this installed, in the same process and code path as a user's run; the totals go to the JSON
file named by `ENV_OUT` at exit.

Work that `lifecycle run` does beside the runs (`lifecycle_assets.training_setup`: the registry
reconcile in a thread) is overhead too, and while it runs it takes the interpreter lock or a
core from the body running then. So its CPU seconds that fall inside a body's span (spread
evenly over each recorded span) are taken out of that body's compute. Only `import` statements
of the body's own thread count as the body's imports.
"""

from __future__ import annotations

import atexit
import builtins
import inspect
import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

ENV_OUT = "BENCH_BODY_TIMES"
# Where to write, at exit, the modules the process imported (in import order) that are not the
# project's: `lifecycle.py` imports them again in a fresh interpreter to time the import floor.
ENV_MODULES = "BENCH_MODULES"
PROJECT_MODULES = ("lifecycle_assets", "body_timer", "__main__")
IMPORTS = "imports inside bodies (overhead)"
BACKGROUND = "set-up beside the runs, during bodies (overhead)"
SETUP_MODULE = "lifecycle_assets.training_setup"


class BodyClock:
    """Seconds inside each op's body, and seconds of `import` statements run from a body."""

    def __init__(self) -> None:
        self.bodies: dict[str, float] = defaultdict(float)
        self.imports: dict[str, float] = defaultdict(float)
        self.current: str | None = None
        self.spans: list[tuple[str, float, float]] = []  # outermost body calls: name, start, end
        self._thread: int | None = None  # the thread running the current body
        self._importing = False

    def run(self, name: str, call: Callable[[], Any]) -> Any:
        outer, self.current = self.current, name
        if outer is None:
            self._thread = threading.get_ident()
        started = time.perf_counter()
        try:
            return call()
        finally:
            ended = time.perf_counter()
            self.bodies[name] += ended - started
            if outer is None:
                self.spans.append((name, started, ended))
            self.current = outer

    def timed_import(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.current is None or self._importing or threading.get_ident() != self._thread:
                return original(*args, **kwargs)
            self._importing = True
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.imports[self.current] += time.perf_counter() - started
                self._importing = False

        return timed

    def background(self) -> dict[str, float]:
        """Per op: the set-up thread's CPU seconds that fell inside its bodies' spans."""
        setup = sys.modules.get(SETUP_MODULE)
        taken: dict[str, float] = defaultdict(float)
        for span in getattr(setup, "SPANS", []):
            length = span.end - span.start
            if length <= 0:
                continue
            for name, start, end in self.spans:
                overlap = min(end, span.end) - max(start, span.start)
                if overlap > 0:
                    taken[name] += span.cpu * overlap / length
        return taken

    def compute(self) -> dict[str, float]:
        """Per op: body time without its imports and the set-up thread's share; those apart."""
        # Spread evenly over its span, the set-up's CPU can exceed a short body's own time: a
        # body gives up at most all of it.
        taken = {
            name: min(share, self.bodies[name] - self.imports[name])
            for name, share in self.background().items()
        }
        totals = {
            name: seconds - self.imports[name] - taken.get(name, 0.0)
            for name, seconds in self.bodies.items()
        }
        return {**totals, IMPORTS: sum(self.imports.values()), BACKGROUND: sum(taken.values())}


def _timed_generator(clock: BodyClock, name: str, body: Iterator[Any]) -> Iterator[Any]:
    try:
        while True:
            try:
                item = clock.run(name, lambda: next(body))
            except StopIteration as stop:
                return stop.value
            yield item
    finally:
        body.close()  # type: ignore[attr-defined]


def install(out: str | None = None) -> BodyClock:
    """Wrap Dagster's call into asset bodies and `import`; returns the live clock."""
    from dagster._core.execution.plan import compute_generator

    clock = BodyClock()
    original = compute_generator.invoke_compute_fn

    def timed(fn: Callable[..., Any], context: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(getattr(context, "op_def", None), "name", None) or fn.__name__
        result = clock.run(name, lambda: original(fn, context, *args, **kwargs))
        if inspect.isgenerator(result):
            return _timed_generator(clock, name, result)
        return result

    compute_generator.invoke_compute_fn = timed
    builtins.__import__ = clock.timed_import(builtins.__import__)
    path = out or os.environ.get(ENV_OUT)
    if path:
        atexit.register(_write, path, clock)
    modules = os.environ.get(ENV_MODULES)
    if modules:
        atexit.register(_write_modules, modules)
    return clock


def _write(path: str, clock: BodyClock) -> None:
    with open(path, "w") as out:
        out.write(json.dumps(clock.compute(), indent=2))


def _write_modules(path: str) -> None:
    # `sys.modules` keeps insertion order, which is the order the imports finished in.
    imported = [name for name in sys.modules if not name.startswith(PROJECT_MODULES)]
    with open(path, "w") as out:
        out.write(json.dumps(imported))


def main() -> None:
    """`lifecycle` with the timer installed (argv as the `lifecycle` script gets it)."""
    install()
    from lifecycle_assets.cli import main as lifecycle

    lifecycle()


if __name__ == "__main__":
    main()
