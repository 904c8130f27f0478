"""Commands about the data before the lifecycle runs on it: check it (`preflight`), draft a spec
from a file (`draft-spec`), simulate batches (`simulate`) and traffic with delayed labels
(`simulate-traffic`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from lifecycle_assets.cli.app import _load, _service_url_option, _spec_option, console, main
from lifecycle_assets.config import Settings


@main.command("preflight")
@_spec_option
def preflight_command(spec_path: str | None) -> None:
    """Read the spec's data and report, before any ingest, what would be quarantined or refused
    and which spec option changes it. Exit code 1 when the data cannot be used at all."""
    from lifecycle_assets.data.preflight import preflight
    from lifecycle_assets.spec import SpecError

    try:
        report = preflight(_load(spec_path))
    except SpecError as error:
        raise click.ClickException(str(error)) from None
    for line in report.lines():
        console.print(line, markup=False, highlight=False)
    if report.errors:
        raise SystemExit(1)


@main.command("draft-spec")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Model name (default: from the file name).")
@click.option("--target", default=None, help="Target column (default: a guess).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def draft_spec_command(data: Path, name: str | None, target: str | None, out: Path | None) -> None:
    """Draft a spec from a CSV or Parquet file: types, levels, a target guess and the
    timestamp. A starting point to read and edit, then check with `lifecycle preflight`."""
    from lifecycle_assets.data.draft import draft_spec

    try:
        text = draft_spec(data, name=name, target=target)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        console.print(f"wrote {out}; check it with `lifecycle preflight --spec {out}`")


@main.command()
@click.option("--days", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default="2026-03-02", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Landing folder (default: $LIFECYCLE_HOME/landing/credit_default).",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--rows-per-day", type=click.IntRange(min=1), default=400, show_default=True)
@click.option("--covariate-shift", type=float, default=0.0, show_default=True)
@click.option("--concept-shift", type=float, default=0.0, show_default=True)
@click.option("--label-shift", type=float, default=0.0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet")
def simulate(
    days: int,
    start: dt.datetime,
    out: Path | None,
    seed: int,
    rows_per_day: int,
    covariate_shift: float,
    concept_shift: float,
    label_shift: float,
    fmt: str,
) -> None:
    """Write simulated credit-risk batches (one file per day) into a landing folder."""
    from lifecycle_assets.data.simulator import ShiftKnobs, simulate_range

    out = out or Settings.from_env().landing_dir / "credit_default"
    shift = ShiftKnobs(covariate=covariate_shift, concept=concept_shift, label=label_shift)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for day, frame in simulate_range(
            start.date(), days, seed=seed, rows_per_day=rows_per_day, shift=shift
        ):
            path = out / f"{day.isoformat()}.{fmt}"
            if fmt == "parquet":
                frame.write_parquet(path)
            else:
                frame.write_csv(path)
            console.print(f"wrote {path} ({frame.height} rows)")
    except OSError as error:
        raise click.ClickException(f"cannot write to {out}: {error.strerror or error}") from None


@main.command("simulate-traffic")
@_spec_option
@_service_url_option("The service to send the traffic to")
@click.option("--days", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default="2026-03-02", show_default=True)
@click.option("--rows-per-day", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--covariate-shift", type=float, default=0.0, show_default=True)
@click.option("--concept-shift", type=float, default=0.0, show_default=True)
@click.option("--label-shift", type=float, default=0.0, show_default=True)
@click.option("--label-delay-days", type=click.FloatRange(min=0), default=3.0, show_default=True)
@click.option("--label-fraction", type=float, default=1.0, show_default=True)
def simulate_traffic(
    spec_path: str | None, service_url: str, days: int, start: dt.datetime, rows_per_day: int,
    seed: int, covariate_shift: float, concept_shift: float, label_shift: float,
    label_delay_days: float, label_fraction: float,
) -> None:  # fmt: skip
    """Send simulated applications to the service, then land their outcomes as delayed labels."""
    import httpx

    from lifecycle_assets.data.ground_truth import labels_folder
    from lifecycle_assets.data.simulator import ShiftKnobs, simulate_range
    from lifecycle_assets.data.traffic import log_wait_seconds
    from lifecycle_assets.data.traffic import simulate_traffic as play

    spec = _load(spec_path)
    shift = ShiftKnobs(covariate=covariate_shift, concept=concept_shift, label=label_shift)
    batches = simulate_range(start.date(), days, seed=seed, rows_per_day=rows_per_day, shift=shift)
    # The simulator writes credit-risk applications: a spec of other data has no traffic here.
    wanted = [f.name for f in spec.features] + [c for c in (spec.id_column, spec.target) if c]
    absent = [column for column in wanted if column not in batches[0][1].columns]
    if absent:
        raise click.ClickException(
            f"{spec.name}: the simulator's applications have no column {absent}: "
            "simulate-traffic plays the built-in credit-risk data only"
        )
    settings = Settings.from_env()
    folder = labels_folder(settings.landing_dir, spec.name)
    # A service on this machine writes its spool here; in team mode every replica, on any
    # machine, ships its closed segments to the shared log.
    log_dirs = [settings.prediction_log_spool_dir]
    ship_seconds = None
    if settings.ships_prediction_logs:
        log_dirs.append(settings.prediction_log_dir)
        ship_seconds = settings.log_ship_seconds
    looked = " and ".join(str(d) for d in log_dirs)
    try:
        answers, files = play(
            service_url, batches, spec, labels_dir=folder, log_dirs=log_dirs,
            label_delay=dt.timedelta(days=label_delay_days), label_fraction=label_fraction,
            log_wait_seconds=log_wait_seconds(ship_seconds),
        )  # fmt: skip
    except httpx.HTTPError as error:  # nothing listens, or it stopped answering
        raise click.ClickException(f"no service answered at {service_url}: {error}") from None
    except (RuntimeError, ValueError) as error:  # it refused a batch; no id_column to match
        raise click.ClickException(str(error).strip().splitlines()[0]) from None
    unlogged = answers["predicted_at"].null_count()
    if unlogged == answers.height:
        # A label is due after its logged prediction: without the log there is no such time.
        raise click.ClickException(
            f"{service_url} answered {answers.height} predictions but none is in its log at "
            f"{looked}: no label landed (is the service logging, with this LIFECYCLE_HOME or "
            "LIFECYCLE_STORAGE_URL?)"
        )
    versions = answers.group_by("model_version").len().sort("model_version").rows()
    console.print(f"{answers.height} predictions from {service_url} (versions: {versions})")
    console.print(
        f"{len(files)} label file(s) in {folder}, arriving {label_delay_days} day(s) after "
        "each prediction as the service logged it"
    )
    if unlogged:
        console.print(
            f"[yellow]{unlogged} of {answers.height} predictions not found in the service's "
            f"log at {looked}: no label landed for them[/yellow]"
        )
