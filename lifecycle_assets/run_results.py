"""What a finished Dagster run says: its outputs, why it failed, whether a step refused by rule,
its check results, and its events as a text log. Read by `lifecycle_run` for the summary and
the console line of each model."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import dagster as dg

from lifecycle_assets.config import Settings
from lifecycle_assets.defs import names
from lifecycle_assets.registry.server_check import short_connection_error
from lifecycle_assets.run_submission import ExecutionResult
from lifecycle_assets.spec import ModelSpec

# How MLflow's client names a request it gave up on ("API request to <url> failed with ...").
_FAILED_REQUEST = re.compile(r"API request to (https?://[^\s?]+)")


def node_output(result: ExecutionResult, spec: ModelSpec, asset: str) -> Any:
    node = f"{spec.name}__{asset}"
    if not result.is_node_success(node):
        return None
    try:
        return result.output_for_node(node)
    except dg.DagsterInvariantViolationError:
        return None  # the step succeeded without output: nothing to do (nothing changed)


def root_message(error: Any) -> str:
    """The innermost cause of a serialized Dagster error, first line, without class prefix;
    with the address of the HTTP request that failed when only an outer error names it (a
    step retried until "Exceeded max_retries" because MLflow's server answered 500: the cause
    alone, "too many 500 error responses", would not say which server)."""
    chain = []
    while error is not None:
        chain.append(error)
        error = getattr(error, "cause", None)
    messages = [(getattr(cause, "message", "") or "").strip() for cause in chain]
    # The innermost cause that says something: a worker's traceback (joblib's
    # `_RemoteTraceback: `) carries no message on its first line; the error it caused does.
    for message in reversed(messages):
        first = message.splitlines()[0] if message else ""
        head, sep, rest = first.partition(": ")
        text = rest.strip() if sep and "." in head and " " not in head else first
        if text:
            return _with_request(short_connection_error(text), messages)
    return "failed"


def _with_request(text: str, messages: list[str]) -> str:
    """`text`, followed by the URL of the failed request an outer message names, if any."""
    for message in messages:
        if (found := _FAILED_REQUEST.search(message)) and found.group(1) not in text:
            return f"{text} (request to {found.group(1)})"
    return text


def failure_cause(result: ExecutionResult) -> str:
    """The first failed step's cause on one line."""
    failures = result.get_step_failure_events()
    if not failures:
        return "the run failed before any step (see the run log)"
    event = failures[0]
    return f"{event.step_key}: {root_message(event.event_specific_data.error)}"


def refused_by_rule(result: ExecutionResult) -> bool:
    """A step failed with a verdict (e.g. the champion moved while this run was judged), not an
    error: see `names.REFUSED_METADATA_KEY`."""
    return refusal_cause(result) is not None


def refusal_cause(result: ExecutionResult) -> str | None:
    """The verdict of the step that refused by rule, in its own words (without the step key
    and the "not promoted: " the summary line adds); None when no step refused."""
    for event in result.get_step_failure_events():
        failure = event.event_specific_data.user_failure_data
        metadata = failure.metadata if failure is not None else {}
        if names.REFUSED_METADATA_KEY in metadata:
            message = root_message(event.event_specific_data.error)
            return message.removeprefix(names.REFUSAL_PREFIX)
    return None


def already_registered_line(result: ExecutionResult) -> str | None:
    """The line a trained model step observed when another run had already registered this
    very training (`v3 already holds this training (run <id>)`); None otherwise."""
    for event in result.all_events:
        if event.event_type != dg.DagsterEventType.ASSET_OBSERVATION:
            continue
        metadata = event.event_specific_data.asset_observation.metadata
        if names.SAME_TRAINING_METADATA_KEY in metadata:
            return str(metadata[names.SAME_TRAINING_METADATA_KEY].value)
    return None


def run_log_path(settings: Settings, model: str, run_id: str) -> Path:
    return settings.reports_dir / model / "runs" / f"{run_id}.log"


def write_run_log(
    instance: dg.DagsterInstance, run_id: str, spec: ModelSpec, settings: Settings
) -> Path:
    """Every event of a Dagster run as text, tracebacks included, beside the model's reports."""
    lines = []
    for entry in instance.all_logs(run_id):
        when = dt.datetime.fromtimestamp(entry.timestamp, dt.UTC).isoformat(timespec="seconds")
        step = entry.step_key or "-"
        event = entry.dagster_event
        text = entry.user_message or (event.message if event else "") or ""
        lines.append(f"{when} {step} {event.event_type_value if event else 'LOG'}: {text}")
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        if error is not None:
            lines.append(error.to_string())
    path = run_log_path(settings, spec.name, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def check_results(result: ExecutionResult) -> list[dict[str, Any]]:
    return [
        {
            "name": e.check_name,
            "passed": e.passed,
            "severity": e.severity.value,
            "description": e.description,
            "actual": e.metadata.get("actual").value if "actual" in e.metadata else None,
            "threshold": e.metadata.get("threshold").value if "threshold" in e.metadata else None,
        }
        for e in result.get_asset_check_evaluations()
    ]
