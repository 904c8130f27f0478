"""Another try for a step that failed on a transient I/O error, and for nothing else.

Dagster's `RetryPolicy` retries whatever ends a step, Ctrl-C included: its op boundary turns an
interruption into a retry request (`op_execution_error_boundary`), so one Ctrl-C during an
ingest restarted the step, and only a third ended the run, as "Exceeded max_retries" (exit 1
instead of 130). Steps that read files or talk to MLflow wear `@io_retry` instead of a policy:
it asks Dagster for a retry (`dg.RetryRequested`, shown in the run log as STEP_UP_FOR_RETRY
with its cause) only for the errors `is_transient` names, and lets everything else, an
interruption first of all, end the step as it would without retries.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sqlite3
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import dagster as dg

# Two more tries, 2 s then 6 s later (Dagster's exponential backoff from a 2 s delay).
MAX_RETRIES = 2
FIRST_DELAY_SECONDS = 2.0
# Errors of libraries a step may use, looked up only once loaded (an error cannot come from a
# package never imported, and the code location does not import them to check).
LIBRARY_ERRORS = (
    ("sqlalchemy.exc", "OperationalError"),  # MLflow's store: locked, connection lost
    ("psycopg2", "OperationalError"),  # the ledger on PostgreSQL: connection lost
    ("botocore.exceptions", "ConnectionError"),  # object storage unreachable: no OSError
)
INTERRUPTIONS = (KeyboardInterrupt, dg.DagsterExecutionInterruptedError)

Compute = TypeVar("Compute", bound=Callable[..., Any])


def is_transient(error: BaseException) -> bool:
    """Whether `error`, or an error behind it, is one that a second try may not meet: an
    OSError (a file being replaced, a refused or timed-out connection, MLflow's HTTP client
    giving up), a locked or unreachable database. Never a step's own verdict (`dg.Failure`),
    and never an error raised while an interruption was ending the step."""
    if isinstance(error, dg.Failure | dg.RetryRequested):
        return False
    chain = list(_chain(error))
    if any(isinstance(link, INTERRUPTIONS) for link in chain):
        return False
    kinds = _transient_kinds()
    return any(isinstance(link, kinds) for link in chain)


def delay_before(retry: int) -> float:
    """Seconds to wait before retry number `retry` (1 for the first)."""
    return FIRST_DELAY_SECONDS * (2**retry - 1)


def io_retry(compute: Compute) -> Compute:
    """An asset's compute function (context first), retried on transient errors only."""
    if inspect.isgeneratorfunction(compute):

        @functools.wraps(compute)
        def generator(context: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            with _retried_if_transient(context):
                yield from compute(context, *args, **kwargs)

        return generator  # type: ignore[return-value]

    @functools.wraps(compute)
    def function(context: Any, *args: Any, **kwargs: Any) -> Any:
        with _retried_if_transient(context):
            return compute(context, *args, **kwargs)

    return function  # type: ignore[return-value]


@contextlib.contextmanager
def _retried_if_transient(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if not is_transient(error):
            raise
        raise dg.RetryRequested(
            max_retries=MAX_RETRIES, seconds_to_wait=delay_before(context.retry_number + 1)
        ) from error


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and the errors behind it, as a traceback shows them: each one's cause, else the
    error it was raised while handling."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        behind = current.__cause__
        if behind is None and not current.__suppress_context__:
            behind = current.__context__
        current = behind


def _transient_kinds() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [OSError, sqlite3.OperationalError]
    for module, name in LIBRARY_ERRORS:
        if (loaded := sys.modules.get(module)) is not None:
            kinds.append(getattr(loaded, name))
    return tuple(kinds)
