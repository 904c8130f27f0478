"""Commands that run the lifecycle (`run`) and a day's monitoring (`monitor`)."""

from __future__ import annotations

import datetime as dt
import functools
import gc
import json
import logging
import os
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from lifecycle_assets.cli.app import (
    _dagster_instance,
    _load,
    _spec_option,
    console,
    main,
    rule,
)
from lifecycle_assets.config import Settings


@main.command()
@_spec_option
@click.option("--refresh", is_flag=True, help="Re-read every day, changed or not.")
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON.")
def run(spec_path: str | None, refresh: bool, as_json: bool) -> None:
    """Ingest, train, evaluate, gate, promote and build the Bento, for every model of the
    project (LIFECYCLE_SPECS, default: the built-in classifier and regressor) or `--spec`.

    Exit code 0: promoted, or nothing changed; 3: a gate or quarantine refused promotion;
    1: error. Days whose inputs changed (source file, spec, feature code) are read again by
    themselves; `--refresh` reads every day again.
    """
    if spec_path is not None and Path(spec_path).is_file():
        # A spec of its own is the project for this run (and the service's default models).
        os.environ["LIFECYCLE_SPECS"] = str(Path(spec_path).resolve())
    # Start-up (imports, definitions, stores) builds most of what the process keeps: the
    # collector's full passes would walk it again and again (about 1 s of 3). It stays off
    # until `run_lifecycle` freezes those objects out of its sight.
    gc.disable()
    try:
        from lifecycle_assets.registry.server_check import TrackingServerError
        from lifecycle_assets.run_submission import SubmissionError
        from lifecycle_assets.storage import CorruptFileError, StorageUnavailableError

        stopped = (SubmissionError, CorruptFileError, StorageUnavailableError, TrackingServerError)
        try:
            summaries = run_lifecycle(spec_path, refresh=refresh, as_json=as_json)
        except stopped as error:
            # The webserver is unreachable or refused a run; a stored manifest was damaged; the
            # shared storage or the MLflow server cannot be reached.
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            # Ctrl-C inside a step ends as `RunCancelled` (run_submission.execute); anywhere
            # else, click would print "Aborted!" and exit 1, as if the command had failed.
            from lifecycle_assets.run_submission import interrupted_between_runs

            raise interrupted_between_runs("run") from None
    finally:
        gc.enable()
    if as_json:
        payload = [s.to_dict() for s in summaries]
        click.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, default=str))
    else:
        console.print(next_steps(Settings.from_env()))
    codes = {summary.exit_code for summary in summaries}
    # Everything is written: the interpreter's last full collections at exit would walk every
    # object of Dagster, MLflow and scikit-learn for nothing (seconds); frozen, they are skipped.
    gc.freeze()
    raise SystemExit(1 if 1 in codes else max(codes))


def next_steps(settings: Settings) -> str:
    """The commands to look at what `lifecycle run` did: the embedded UIs, or in team mode the
    team's (README "Team mode"): `make dev` and `make mlflow-ui` read the embedded SQLite stores,
    which a team run never wrote."""
    serve = "`make serve` (every champion on http://127.0.0.1:3001)"
    if not settings.team:
        return (
            f"next: `make dev` (Dagster UI on http://127.0.0.1:3000), {serve}, `make mlflow-ui`, "
            "`lifecycle status`"
        )
    dagster = (
        f"the Dagster UI at {settings.dagster_url}"
        if settings.dagster_url
        else "`make team-dev` (Dagster UI on the PostgreSQL instance, http://127.0.0.1:3000)"
    )
    return (
        f"next: {dagster}, {serve}, the MLflow UI at {settings.mlflow_tracking_uri}, "
        "`lifecycle status`"
    )


def run_lifecycle(spec_path: str | None, *, refresh: bool = False, as_json: bool = False) -> list:
    """`lifecycle run` without the exit: preflight, ingest, train and gate every model.

    A user error (bad spec, unusable data) ends it with one line and exit code 1, before
    anything is written.
    """
    from lifecycle_assets.data.preflight import PreflightError, preflight
    from lifecycle_assets.definitions import build_definitions
    from lifecycle_assets.lifecycle_run import (
        IngestError,
        ingest_window,
        partitions_in_window,
        train_and_deploy,
    )
    from lifecycle_assets.registry.server_check import check_tracking_server
    from lifecycle_assets.run_summary import write_summary
    from lifecycle_assets.spec import SpecError, configured_specs
    from lifecycle_assets.storage import check_available
    from lifecycle_assets.training_setup import TrainingSetUp

    try:
        specs = [_load(spec_path)] if spec_path is not None else configured_specs()
        for spec in specs:
            report = preflight(spec)
            if not as_json and (report.errors or report.warnings):
                for line in report.lines():
                    console.print(line, markup=False, highlight=False, soft_wrap=True)
            report.raise_for_errors()
    except (SpecError, PreflightError) as error:
        raise click.ClickException(str(error)) from None
    settings = Settings.from_env()
    check_available(settings)
    check_tracking_server(settings.mlflow_tracking_uri)
    if settings.dagster_url:
        _follow_submitted_runs(settings.dagster_url, show=not as_json)
    instance = _dagster_instance()
    defs = _definitions(build_definitions, specs)
    # The registry is opened here (a new store created, MLflow's store modules imported) and
    # reconciled in a thread beside the first ingest run, which imports nothing: two threads
    # importing one module graph at once can hand one of them a partly initialised module.
    setup = TrainingSetUp([spec.name for spec in specs], settings).start()
    # The modules and definitions live as long as the process: out of the collector's sight,
    # the periodic full collections during the runs no longer walk them again and again.
    gc.freeze()
    gc.enable()  # `run` turned it off for the start-up
    # When nothing changed, or a day has no rows, an asset yields nothing and Dagster warns
    # (through Python logging, outside the run log) that its checks emitted no result.
    logging.getLogger("dagster._core.execution.plan.active").setLevel(logging.ERROR)
    summaries = []
    for spec in specs:
        days = partitions_in_window(spec)
        with Progress(console=console, transient=True, disable=as_json) as progress:
            bar = progress.add_task(f"ingesting {len(days)} days of {spec.name}", total=len(days))
            try:
                ingest = ingest_window(
                    defs,
                    spec,
                    instance,
                    refresh=refresh,
                    progress=functools.partial(_advance, progress, bar),
                    registry_reconciled_apart=True,
                )
            except IngestError as error:  # a failed step, not bad data (that is quarantined)
                raise click.ClickException(f"{spec.name}: {error}") from None
        setup.wait()  # the registry is reconciled before training reads it
        if not as_json:
            console.print(ingest.line(spec.name), markup=False, highlight=False)
            for line in ingest.details():
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            if not ingest.refusal:
                console.print(f"{spec.name}: training, evaluating and gating (one Dagster run)...")
        summary = train_and_deploy(defs, spec, instance, ingest)
        path = write_summary(summary, settings)
        summaries.append(summary)
        if not as_json:
            _print_summary(summary, settings, path)
    return summaries


def _definitions(build_definitions, specs: list):
    """The project's Dagster definitions; a spec Dagster refuses (a schedule that is not a
    5-field cron expression) ends the command in one line naming the models' spec fields."""
    from dagster import DagsterInvalidDefinitionError

    try:
        return build_definitions(specs)
    except DagsterInvalidDefinitionError as error:
        first = str(error).strip().splitlines()[0]
        models = ", ".join(spec.name for spec in specs)
        raise click.ClickException(
            f"the spec of {models} does not make a valid Dagster definition (check its "
            f"`schedules:`): {first}"
        ) from None


def _follow_submitted_runs(url: str, *, show: bool) -> None:
    """Runs go to the Dagster webserver at `url`: fail now if it does not answer, and show
    each run's status changes while the command waits for it."""
    from lifecycle_assets.run_submission import check_webserver, log

    check_webserver(url)
    if show and not any(isinstance(h, _ConsoleLines) for h in log.handlers):
        log.addHandler(_ConsoleLines())
        log.setLevel(logging.INFO)
    if show:
        console.print(f"runs go to the Dagster webserver at {url} (LIFECYCLE_DAGSTER_URL)")


class _ConsoleLines(logging.Handler):
    """A submitted run's status change as a console line (printed above the progress bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"  {record.getMessage()}", markup=False, highlight=False)


def _advance(progress: Progress, bar, _day: str) -> None:
    progress.advance(bar)


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _print_summary(summary, settings: Settings, path: Path) -> None:
    from lifecycle_assets.lifecycle_run import UNCHANGED, current_champion

    if summary.outcome == UNCHANGED:
        held = current_champion(settings, summary.model_name)
        # None when the run that registered this training has not promoted it (yet).
        stays = f"`champion` stays v{held}" if held else "no champion yet"
        console.print(
            f"{summary.model_name}: {summary.failure}; no new version, {stays}.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    rule(f"[bold]{summary.model_name} v{summary.model_version or '-'}")
    if summary.metrics:
        metrics = Table("metric", "value", title="test-set metrics")
        for key, value in summary.metrics.items():
            if key != "n":
                metrics.add_row(key, f"{value:.4f}")
        console.print(metrics)
    if summary.gates:
        gates = Table("gate", "verdict", "actual", "threshold", "reason", title="gates (checks)")
        for gate in [*summary.gates, *summary.warnings]:
            verdict = (
                "[green]PASS"
                if gate["passed"]
                else ("[yellow]WARN" if gate.get("severity") == "WARN" else "[red]FAIL")
            )
            gates.add_row(
                gate["name"],
                verdict,
                _number(gate["actual"]),
                _number(gate["threshold"]),
                # A reason is text, not markup: "[a, b]" (the slices compared) must print as is.
                escape(gate.get("description") or ""),
            )
        console.print(gates)
    if summary.promoted:
        console.print(f"[green]v{summary.model_version} is now `champion`.")
    else:
        held = current_champion(settings, summary.model_name)
        holder = f"v{held}" if held else "nobody"
        console.print(
            f"not promoted: {summary.failure}; `champion` stays {holder}.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"Bento: {summary.bento_tag or 'not built'}")
    console.print(f"model card: {summary.model_card or 'not written'}")
    console.print(f"summary: {path}")
    console.print(f"run log: {summary.run_logs[0] if summary.run_logs else '-'}")


@main.command()
@_spec_option
@click.option(
    "--day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="UTC day (default: today)."
)
def monitor(spec_path: str | None, day: dt.datetime | None) -> None:
    """Collect a day's predictions, report their drift and score them against arrived labels."""
    from lifecycle_assets.definitions import build_definitions
    from lifecycle_assets.defs import names
    from lifecycle_assets.defs.jobs import monitoring_job_name
    from lifecycle_assets.run_submission import SubmissionError, execute
    from lifecycle_assets.storage import StorageUnavailableError, check_available

    spec = _load(spec_path)
    key = (day.date() if day else dt.datetime.now(dt.UTC).date()).isoformat()
    job = build_definitions([spec]).resolve_job_def(monitoring_job_name(spec))
    if job.partitions_def is not None and not job.partitions_def.has_partition_key(key):
        raise click.BadParameter(
            f"{key} is not a day {spec.name} can have served: from {spec.start_date} to "
            "today (UTC)",
            param_hint="--day",
        )
    try:
        check_available(Settings.from_env())
        # In this process, or submitted to the webserver when LIFECYCLE_DAGSTER_URL is set.
        result = execute(
            job,
            _dagster_instance(),
            partition_key=key,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    except (SubmissionError, StorageUnavailableError) as error:
        # The webserver is unreachable or refused the run; the shared storage cannot be reached.
        raise click.ClickException(str(error)) from None
    drift = (
        result.output_for_node(f"{spec.name}__{names.DRIFT_REPORT}")
        if result.is_node_success(f"{spec.name}__{names.DRIFT_REPORT}")
        else None
    )
    live = (
        result.output_for_node(f"{spec.name}__{names.LIVE_PERFORMANCE}")
        if result.is_node_success(f"{spec.name}__{names.LIVE_PERFORMANCE}")
        else None
    )
    if drift is None or live is None:
        from lifecycle_assets.run_results import failure_cause

        # The step's innermost cause (the server and its error), not Dagster's outer wrapper:
        # a step retried to its end said only "Exceeded max_retries of 2".
        raise click.ClickException(f"monitoring {key} failed: {failure_cause(result)}")
    verdict = "[red]DRIFT" if drift["drifted"] else "[green]no drift"
    console.print(f"{spec.name} {key}: {drift['rows']} predictions, {verdict}[/]")
    if drift.get("drifted_features"):
        console.print(f"drifted features: {', '.join(drift['drifted_features'])}")
    if drift.get("html"):
        console.print(f"drift report: {drift['html']}")
    console.print(live.get("summary", ""))
