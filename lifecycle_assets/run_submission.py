"""Where `lifecycle run` executes a Dagster job: in its own process, or on the team's instance.

Embedded (LIFECYCLE_DAGSTER_URL unset), a job runs in the CLI's process, tagged with its host
so that the next `lifecycle run` on that host can end it if the process was killed (recovery.py),
on a SQLite or a PostgreSQL instance alike. With LIFECYCLE_DAGSTER_URL set, the job is submitted
to the Dagster webserver over GraphQL: it goes through the instance's run queue and launcher (the
daemon dequeues it, the launcher starts it where the deployment runs code), and the CLI only
waits for it; Ctrl-C while it waits terminates the submitted run (`RunCancelled`, exit 130).
Either way the caller gets an `ExecutionResult`: events, checks and outputs are read
back from the instance (DAGSTER_HOME, the one the webserver uses) and from the IO manager's
per-run values, so the summary and exit codes do not depend on where the run executed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import click
import dagster as dg
from dagster._core.definitions import NodeHandle
from dagster._core.execution.execution_result import ExecutionResult
from dagster._core.storage.dagster_run import FINISHED_STATUSES, NOT_FINISHED_STATUSES

from lifecycle_assets import storage
from lifecycle_assets.defs.resources import JsonIOManager
from lifecycle_assets.registry.owner import TAG_HOST
from lifecycle_assets.settings import LifecycleSettings

__all__ = [
    "ExecutionResult",
    "RunCancelled",
    "SubmissionError",
    "check_webserver",
    "execute",
    "interrupted_between_runs",
]

# Which `lifecycle run` submitted a run (host:pid): the run itself executes elsewhere, so it
# carries no TAG_HOST (recovery would take the launcher's pid for one on this host).
TAG_SUBMITTED_BY = "lifecycle/submitted_by"
JSON_IO_MANAGER = "json_io_manager"
PARTITION_TAG = "dagster/partition"
POLL_SECONDS = 1.0
# How long a cancellation may take before the CLI gives up and names the run to check: the
# user pressed Ctrl-C to get their prompt back, not to wait a minute more.
CANCEL_TIMEOUT_SECONDS = 15
# What a shell reports for a command ended by SIGINT (128 + 2).
INTERRUPTED_EXIT_CODE = 130
log = logging.getLogger("lifecycle.submission")
# How Dagster records a step or run that Ctrl-C stopped in this process.
INTERRUPTED_ERRORS = frozenset({"DagsterExecutionInterruptedError", "KeyboardInterrupt"})


class SubmissionError(Exception):
    """The webserver could not take or report a run; the message is one line for the CLI."""


class RunCancelled(click.ClickException):
    """Ctrl-C while the CLI waited for a submitted run: the run was terminated, or could not be.

    A ClickException, not a SubmissionError, so that it passes the commands' `except
    SubmissionError` (exit 1) and click ends the command with exit code 130 and this one line.
    """

    exit_code = INTERRUPTED_EXIT_CODE

    def show(self, file: Any = None) -> None:
        # Not click's "Error: " prefix: cancelling on request is not an error.
        click.echo(self.message, err=True)


def execute(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    *,
    tags: Mapping[str, str] | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    run_config: Mapping[str, Any] | None = None,
    partition_key: str | None = None,
) -> ExecutionResult:
    """Run `job` to its end, in this process or through the webserver the settings name."""
    url = LifecycleSettings.from_env().dagster_url
    if url is None:
        result = job.execute_in_process(
            instance=instance,
            tags={**(tags or {}), TAG_HOST: socket.gethostname()},
            asset_selection=list(asset_selection) if asset_selection else None,
            raise_on_error=False,
            run_config=dict(run_config or {}),
            partition_key=partition_key,
        )
        if interrupted(result):
            # Dagster turns Ctrl-C inside a step into a failed run and returns: without this,
            # the command would go on to its next run (the next model's training, a promotion).
            raise RunCancelled(
                f"interrupted run {result.run_id} of {job.name}: it ended "
                f"{result.dagster_run.status.value}, and nothing after it ran"
            )
        return result
    if partition_key is not None:
        # How Dagster names a run's partition; the webserver launches that partition.
        tags = {**(tags or {}), PARTITION_TAG: partition_key}
    try:
        run_id = submit(
            url, job.name, tags=tags, asset_selection=asset_selection, run_config=run_config
        )
    except KeyboardInterrupt:
        raise cancel_unanswered(url, job.name, instance) from None
    try:
        wait(url, run_id, job.name)
    except KeyboardInterrupt:
        raise cancel(url, run_id, job.name) from None
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise SubmissionError(
            f"run {run_id} submitted to {url} is not in this DAGSTER_HOME's instance: "
            "point DAGSTER_HOME at the dagster.yaml the webserver uses"
        )
    return SubmittedRunResult(job, instance, run)


def interrupted(result: Any) -> bool:
    """Whether an in-process run ended because of Ctrl-C (SIGINT, or SIGTERM, which Dagster
    treats alike): a step or the run failed with Dagster's interruption error, or with an
    error it led to. A step under a Dagster `RetryPolicy` (none of ours: see
    `defs/io_retry.py`) turns the interruption into a retry and ends in "Exceeded
    max_retries", caused by it; an error raised while the interruption unwound carries it as
    its context."""
    for event in result.all_events:
        if event.event_type not in (
            dg.DagsterEventType.STEP_FAILURE,
            dg.DagsterEventType.RUN_FAILURE,
        ):
            continue
        error = getattr(event.event_specific_data, "error", None)
        if any(link.cls_name in INTERRUPTED_ERRORS for link in _error_chain(error)):
            return True
    return False


def _error_chain(error: Any) -> Iterator[Any]:
    """A serialized Dagster error and every error behind it (causes and contexts)."""
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None:
            continue
        yield current
        pending += [getattr(current, "cause", None), getattr(current, "context", None)]


def cancel_unanswered(url: str, job_name: str, instance: dg.DagsterInstance) -> RunCancelled:
    """Ctrl-C before the webserver answered a submission: the run may exist all the same, so
    it is looked up by this process's `submitted_by` tag and cancelled if found."""
    mine = {TAG_SUBMITTED_BY: f"{socket.gethostname()}:{os.getpid()}"}
    try:
        runs = instance.get_runs(
            dg.RunsFilter(job_name=job_name, tags=mine, statuses=list(NOT_FINISHED_STATUSES))
        )
    except KeyboardInterrupt:
        runs = []
    if not runs:
        return RunCancelled(
            f"interrupted while submitting {job_name} to {url}: no run of it from this command "
            f"is in the instance (see {url}/runs)"
        )
    return cancel(url, runs[0].run_id, job_name)


def interrupted_between_runs(command: str) -> RunCancelled:
    """Ctrl-C outside any step of a run `command` executed here (starting up, between two runs,
    writing a summary): no run of it is still executing, so there is nothing to cancel. A run
    that Dagster was still creating or ending is left `STARTED`, tagged with this host, and the
    next `lifecycle run` ends it (`recovery.recover_dagster`)."""
    return RunCancelled(
        f"interrupted `lifecycle {command}` outside a run's steps: nothing after it ran, and "
        "the next `lifecycle run` takes up what is left"
    )


def submitted_by(run: dg.DagsterRun) -> str | None:
    """Which `lifecycle` command executed or submitted `run` (host, or host:pid); None for a run
    launched another way (the UI, a schedule, a sensor)."""
    return run.tags.get(TAG_SUBMITTED_BY) or run.tags.get(TAG_HOST)


def graphql_client(url: str, timeout: int = 60) -> Any:
    """The official GraphQL client on `url` (http(s)://host[:port][/prefix])."""
    from dagster_graphql import DagsterGraphQLClient

    parts = urlsplit(url)
    return DagsterGraphQLClient(
        parts.hostname or "",
        port_number=parts.port,
        use_https=parts.scheme == "https",
        path_prefix=parts.path.rstrip("/"),
        timeout=timeout,
    )


def check_webserver(url: str) -> None:
    """Fail fast, in one line, when the webserver does not answer (before anything is read)."""
    import httpx

    try:
        response = httpx.get(f"{url}/server_info", timeout=10)
        response.raise_for_status()
        if "dagster_webserver_version" not in response.json():
            raise ValueError("it answers, but not as a Dagster webserver")
    except (httpx.HTTPError, ValueError) as error:
        raise SubmissionError(
            f"the Dagster webserver at {url} (LIFECYCLE_DAGSTER_URL) is unreachable: "
            f"{_first_line(error)}"
        ) from None


def submit(
    url: str,
    job_name: str,
    *,
    tags: Mapping[str, str] | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> str:
    """Submit one run of `job_name` to the webserver's code location; its run id."""
    from dagster_graphql import DagsterGraphQLClientError

    submitted_by = {TAG_SUBMITTED_BY: f"{socket.gethostname()}:{os.getpid()}"}
    try:
        return graphql_client(url).submit_job_execution(
            job_name,
            run_config=dict(run_config or {}),
            tags={**(tags or {}), **submitted_by},
            asset_selection=list(asset_selection) if asset_selection else None,
        )
    except DagsterGraphQLClientError as error:
        raise SubmissionError(f"{url} refused {job_name}: {_graphql_reason(error)}") from None


def wait(url: str, run_id: str, job_name: str) -> dg.DagsterRunStatus:
    """Poll the run's status until it has finished, logging each change (the CLI shows them)."""
    from dagster_graphql import DagsterGraphQLClientError

    client = graphql_client(url)
    started = time.monotonic()
    status = None
    while True:
        try:
            current = client.get_run_status(run_id)
        except DagsterGraphQLClientError as error:
            raise SubmissionError(
                f"{url} lost run {run_id} of {job_name}: {_graphql_reason(error)}"
            ) from None
        if current != status:
            elapsed = time.monotonic() - started
            log.info("%s run %s: %s (%.0f s)", job_name, run_id[:8], current.value, elapsed)
            status = current
        if current in FINISHED_STATUSES:
            return current
        time.sleep(POLL_SECONDS)


def cancel(url: str, run_id: str, job_name: str) -> RunCancelled:
    """Terminate a submitted run nobody waits for any more (the webserver's terminateRun: the
    queue drops a queued run, the launcher stops a started one); the line saying what became
    of it. A run left behind would go on training or promoting with nobody watching."""
    from dagster_graphql import DagsterGraphQLClientError

    client = graphql_client(url, timeout=CANCEL_TIMEOUT_SECONDS)
    try:
        before = client.get_run_status(run_id)
        if before in FINISHED_STATUSES:
            # It ended between the last poll and Ctrl-C: what it did stands, say so.
            return RunCancelled(
                f"run {run_id} of {job_name} had already finished ({before.value}) when "
                f"interrupted: nothing to cancel, see {url}/runs/{run_id}"
            )
        client.terminate_run(run_id)
        status = client.get_run_status(run_id).value
    except (DagsterGraphQLClientError, KeyboardInterrupt) as error:
        reason = "interrupted again" if isinstance(error, KeyboardInterrupt) else None
        return RunCancelled(
            f"could not cancel run {run_id} of {job_name} "
            f"({reason or _graphql_reason(error)}): check it at {url}/runs/{run_id}"
        )
    return RunCancelled(f"cancelled run {run_id} of {job_name} on {url} ({status})")


def _graphql_reason(error: Exception) -> str:
    """The client's error as one line: its kind and message, without the query it sent."""
    kind, *rest = [*error.args, ""]
    body = rest[0] if rest else ""
    text = f"{kind}: {body}" if body else str(kind)
    return _first_line(text)


def _first_line(error: object) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class SubmittedRunResult(ExecutionResult):
    """A finished run read back from the instance, with the same questions answered as an
    in-process result: which steps succeeded, which checks failed, what each asset produced."""

    def __init__(
        self, job_def: dg.JobDefinition, instance: dg.DagsterInstance, run: dg.DagsterRun
    ) -> None:
        self._job_def = job_def
        self._instance = instance
        self._run = run

    @property
    def job_def(self) -> dg.JobDefinition:
        return self._job_def

    @property
    def dagster_run(self) -> dg.DagsterRun:
        return self._run

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @cached_property
    def all_events(self) -> list[dg.DagsterEvent]:
        entries = self._instance.all_logs(self._run.run_id)
        return [entry.dagster_event for entry in entries if entry.dagster_event is not None]

    def _get_output_for_handle(self, handle: NodeHandle, output_name: str) -> object:
        """The value the JSON IO manager stored for this run (`<asset>/<run id>.json`); None
        when the step produced None (the manager stores nothing for it)."""
        step_key = str(handle)
        produced = any(
            event.is_successful_output
            and event.step_key == step_key
            and event.step_output_data.output_name == output_name
            for event in self.all_events
        )
        if not produced:
            raise dg.DagsterInvariantViolationError(
                f"No outputs found for output '{output_name}' from node '{handle}'."
            )
        assets = self._job_def.asset_layer.get_assets_def_for_node(handle)
        key = self._job_def.asset_layer.get_asset_key_for_node_output(handle, output_name)
        if assets is None or key is None:
            raise dg.DagsterInvariantViolationError(
                f"{step_key}.{output_name} is not an asset value: it cannot be read back"
            )
        # A partitioned asset's value is stored under its partition, any other under the run.
        name = self._run.run_id
        if assets.partitions_def is not None:
            name = self._run.tags.get(PARTITION_TAG)
            if name is None:
                raise dg.DagsterInvariantViolationError(
                    f"{step_key}.{output_name} is partitioned but run {self.run_id} names no "
                    "single partition: it cannot be read back"
                )
        if assets.get_io_manager_key_for_asset_key(key) != JSON_IO_MANAGER:
            raise dg.DagsterInvariantViolationError(
                f"{key.to_user_string()} is not stored by the JSON IO manager"
            )
        path = JsonIOManager().value_path(key, name)
        return storage.read_json(path) if storage.exists(path) else None
