"""A pytest plugin that fails the test which leaves the process's SIGINT/SIGTERM changed.

Why: an ignored signal (SIG_IGN) and the blocked-signal mask survive `exec`, so a test that leaves
the pytest process ignoring SIGINT silently breaks every later test that sends Ctrl-C to a command
it starts (test_run_submission.py met it). A changed Python handler does not cross `exec` but
changes what Ctrl-C does to pytest itself. The state is taken before an item's setup and compared
after its teardown, so fixtures of any scope are covered (a session fixture is set up with the
first item that uses it and torn down with the last item); on a change the state is restored and
the item errors in teardown with a message naming the signal, before and after.

One change is restored without failing: every in-process Dagster execution maps SIGTERM to
SIGINT's handler (`dagster._utils.interrupts.setup_interrupt_handlers`, "for k8s") and never maps
it back. It makes SIGTERM raise KeyboardInterrupt in pytest, does not cross `exec`, and would
otherwise fail every Dagster test; restoring it keeps the next test's starting state clean.
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest

WATCHED = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class SignalState:
    """What a process hands on or reacts with: each watched signal's handler, the blocked set."""

    handlers: dict[signal.Signals, Any]
    blocked: frozenset[signal.Signals]

    @classmethod
    def now(cls) -> SignalState:
        handlers = {signum: signal.getsignal(signum) for signum in WATCHED}
        blocked = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        return cls(handlers, blocked)

    def restore(self) -> None:
        for signum, handler in self.handlers.items():
            # None: a handler installed outside Python; leave it, there is nothing to put back.
            if handler is not None:
                signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, self.blocked)


def describe(handler: Any) -> str:
    """A handler as a reader knows it: SIG_IGN, SIG_DFL, or the function's qualified name."""
    if handler in (signal.SIG_IGN, signal.SIG_DFL):
        return signal.Handlers(handler).name
    if callable(handler):
        module = getattr(handler, "__module__", None) or "?"
        return f"{module}.{getattr(handler, '__qualname__', repr(handler))}"
    return repr(handler)


def _is_dagster_sigterm_remap(before: SignalState, after: SignalState) -> bool:
    """SIGTERM now runs the SIGINT handler the test started with (Dagster's remap)."""
    sigterm = after.handlers[signal.SIGTERM]
    return sigterm is before.handlers[signal.SIGINT] and sigterm is signal.default_int_handler


def changes(before: SignalState, after: SignalState) -> list[str]:
    """One line per change a test must not leave behind; empty when it left nothing."""
    found = []
    for signum in WATCHED:
        old, new = before.handlers[signum], after.handlers[signum]
        if old == new:
            continue
        if signum == signal.SIGTERM and _is_dagster_sigterm_remap(before, after):
            continue
        found.append(f"{signum.name} handler {describe(old)} -> {describe(new)}")
    if before.blocked != after.blocked:
        names = lambda signals: sorted(s.name for s in signals)  # noqa: E731
        found.append(
            f"blocked signals {names(before.blocked)} -> {names(after.blocked)}"
            f" (newly blocked {names(after.blocked - before.blocked)},"
            f" unblocked {names(before.blocked - after.blocked)})"
        )
    return found


_STATE_KEY = pytest.StashKey[SignalState]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    item.stash[_STATE_KEY] = SignalState.now()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    before = item.stash.get(_STATE_KEY, None)
    try:
        result = yield
    finally:
        after = SignalState.now()
        if before is not None and after != before:
            before.restore()
    found = changes(before, after) if before is not None else []
    if found:
        pytest.fail(
            f"{item.nodeid} left the process's signal state changed (restored now; an ignored "
            f"or blocked signal is inherited by every process a later test starts): "
            + "; ".join(found),
            pytrace=False,
        )
    return result


_INHERITED_KEY = pytest.StashKey[SignalState]()


def pytest_configure(config: pytest.Config) -> None:
    """Start from SIGINT at Python's default and SIGINT/SIGTERM unblocked, whatever launched
    pytest: a shell without job control (`pytest ... &` in a script) starts it with SIGINT
    ignored, which every command a test starts would inherit, so Ctrl-C tests would hang."""
    inherited = SignalState.now()
    config.stash[_INHERITED_KEY] = inherited
    if inherited.handlers[signal.SIGINT] is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)


def pytest_report_header(config: pytest.Config) -> str:
    """The signal state pytest was started with, so a run log tells a launcher's SIG_IGN from a
    test's."""
    state = config.stash[_INHERITED_KEY]
    handlers = ", ".join(f"{s.name} {describe(h)}" for s, h in state.handlers.items())
    blocked = sorted(s.name for s in state.blocked) or "none"
    line = f"signals at start: {handlers}; blocked: {blocked}"
    if state != SignalState.now():
        line += " (reset: SIGINT to Python's default, SIGINT and SIGTERM unblocked)"
    return line
