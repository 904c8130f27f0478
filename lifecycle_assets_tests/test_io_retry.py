"""Steps that do I/O are retried on transient errors only, and Ctrl-C is never one of them.

Dagster's `RetryPolicy` retried an interrupted step (its op boundary turns the interruption into
a retry request): one Ctrl-C restarted the step. These run real ops through a real Dagster
instance, in this process, with a real SIGINT where the test is about Ctrl-C.
"""

import errno
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy.exc
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.io_retry import io_retry, is_transient
from lifecycle_assets.run_submission import RunCancelled, execute
from lifecycle_assets_tests.small_project import small_spec

RETRIED = dg.DagsterEventType.STEP_UP_FOR_RETRY


def _raised(make: Callable[[], None]) -> BaseException:
    try:
        make()
    except BaseException as error:
        return error
    raise AssertionError("nothing raised")


def _locked_store() -> None:
    raise sqlalchemy.exc.OperationalError(
        "UPDATE model_versions", {}, sqlite3.OperationalError("database is locked")
    )


def _mlflow_on_a_locked_store() -> None:
    try:
        _locked_store()
    except sqlalchemy.exc.OperationalError as error:  # as MLflow's session maker does
        raise MlflowException(str(error), error_code=TEMPORARILY_UNAVAILABLE) from error


def _os_error_while_interrupted() -> None:
    try:
        raise dg.DagsterExecutionInterruptedError()
    finally:
        raise OSError(errno.EIO, "cleanup failed")


@pytest.mark.parametrize(
    ("make", "transient"),
    [
        (lambda: open("/nonexistent/dir/file"), True),  # noqa: SIM115
        (_locked_store, True),
        (_mlflow_on_a_locked_store, True),
        (lambda: int("x"), False),
        (_os_error_while_interrupted, False),
    ],
)
def test_is_transient_reads_the_whole_chain(make: Callable[[], None], transient: bool) -> None:
    assert is_transient(_raised(make)) is transient


def test_a_step_verdict_is_never_retried() -> None:
    def verdict() -> None:
        try:
            open("/nonexistent/dir/file")  # noqa: SIM115
        except OSError as error:
            raise dg.Failure("the champion moved") from error

    assert not is_transient(_raised(verdict))


def test_no_step_of_the_code_location_has_a_dagster_retry_policy(tmp_path: Path) -> None:
    """A `RetryPolicy` retries an interrupted step whatever its cause: `io_retry` is the only
    retry there is."""
    defs = build_definitions([small_spec(tmp_path)])
    with_policy = [
        assets.node_def.name
        for assets in defs.resolve_asset_graph().assets_defs
        if assets.is_executable and assets.node_def.retry_policy is not None
    ]
    assert with_policy == []
    jobs = [job.name for job in defs.resolve_all_job_defs() if job.op_retry_policy is not None]
    assert jobs == []


def _one_op_job(compute: Callable[[dg.OpExecutionContext], None], **op_args) -> dg.JobDefinition:
    op = dg.op(name="io_step", **op_args)(compute)

    @dg.job(name="io_job")
    def io_job() -> None:
        op()

    return io_job


def _first_try_fails(fail: Callable[[], None]) -> Callable[[dg.OpExecutionContext], None]:
    @io_retry
    def compute(context: dg.OpExecutionContext) -> None:
        if context.retry_number == 0:
            fail()

    return compute


def _locked_sqlite(path: Path) -> Callable[[], None]:
    """A write to a SQLite file another connection holds locked: the lock is let go as the
    write fails, so a second try succeeds."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN EXCLUSIVE")

    def write() -> None:
        try:
            with sqlite3.connect(path, timeout=0) as writer:
                writer.execute("INSERT INTO t VALUES (1)")
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    return write


@pytest.mark.parametrize("fault", ["os error", "locked sqlite"])
def test_a_transient_error_is_retried_and_the_retry_is_in_the_run_log(
    fault: str, tmp_path: Path
) -> None:
    def os_error() -> None:
        raise OSError(errno.EIO, "disk busy")

    fail = os_error if fault == "os error" else _locked_sqlite(tmp_path / "store.db")
    with dg.instance_for_test() as instance:
        result = _one_op_job(_first_try_fails(fail)).execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert result.success
        (retry,) = [event for event in result.all_events if event.event_type == RETRIED]
        cause = retry.event_specific_data.error.cause
        assert cause.cls_name == ("OSError" if fault == "os error" else "OperationalError")
        kinds = [entry.dagster_event.event_type for entry in instance.all_logs(result.run_id)]
        assert RETRIED in kinds and dg.DagsterEventType.STEP_RESTARTED in kinds


@pytest.mark.parametrize("error", [ValueError("a bug"), dg.Failure("a verdict")])
def test_any_other_error_ends_the_step_at_once(error: Exception) -> None:
    def fail() -> None:
        raise error

    with dg.instance_for_test() as instance:
        result = _one_op_job(_first_try_fails(fail)).execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert not result.success
    assert RETRIED not in [event.event_type for event in result.all_events]


def _ctrl_c(context: dg.OpExecutionContext) -> None:
    """Ctrl-C, really: SIGINT to this process, which runs the step in its main thread."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)  # Dagster's handler raises in here
    raise AssertionError("the interruption never came")


def test_ctrl_c_in_an_io_retry_step_ends_the_run_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIFECYCLE_DAGSTER_URL", raising=False)
    with dg.instance_for_test() as instance:
        with pytest.raises(RunCancelled) as cancelled:
            execute(_one_op_job(io_retry(_ctrl_c)), instance)
        assert cancelled.value.exit_code == 130
        (run,) = instance.get_runs()
        kinds = [
            entry.dagster_event.event_type
            for entry in instance.all_logs(run.run_id)
            if entry.dagster_event is not None
        ]
    assert RETRIED not in kinds and dg.DagsterEventType.STEP_FAILURE in kinds


def test_ctrl_c_under_a_dagster_retry_policy_still_counts_as_interrupted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should a step have a `RetryPolicy` (a job's `op_retry_policy`, a step added later), its
    interruption ends as "Exceeded max_retries", caused by the interruption: still Ctrl-C."""
    monkeypatch.delenv("LIFECYCLE_DAGSTER_URL", raising=False)
    job = _one_op_job(_ctrl_c, retry_policy=dg.RetryPolicy(max_retries=0))
    with dg.instance_for_test() as instance, pytest.raises(RunCancelled) as cancelled:
        execute(job, instance)
    assert cancelled.value.exit_code == 130
    assert "it ended FAILURE" in cancelled.value.format_message()
