"""The portfolio health scorecard: every model on one page, with candidates for retirement."""

import dataclasses
import datetime as dt
from typing import Any

import dagster as dg

from lifecycle_assets.config import RetirementPolicy
from lifecycle_assets.defs import names
from lifecycle_assets.defs.executors import in_process_steps
from lifecycle_assets.defs.resources import JsonIOManager, LifecycleResource, MlflowResource
from lifecycle_assets.ml import scorecard, scorecard_html
from lifecycle_assets.spec import ModelSpec

PORTFOLIO = "portfolio"
HEALTH_SCORECARD = "health_scorecard"
SCORECARD_KEY = dg.AssetKey([PORTFOLIO, HEALTH_SCORECARD])
RETIREMENT_CHECK = "no_retirement_candidates"
SCORECARD_JOB = "portfolio_scorecard_job"
# Read for lineage only: the scorecard reads what these assets wrote, never loads them as inputs.
UPSTREAM = (names.CHAMPION_MODEL, names.PREDICTION_LOG, names.DRIFT_REPORT, names.LIVE_PERFORMANCE)

_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("model"),
        dg.TableColumn("task"),
        dg.TableColumn("champion", description="version holding `champion`"),
        dg.TableColumn("champion_age_days", "int", description="days since its promotion"),
        dg.TableColumn("promoted_by", description="actor recorded in the alias ledger"),
        dg.TableColumn("metric", description="the task's primary metric"),
        dg.TableColumn("metric_floor", "float", description="the spec's gate floor"),
        dg.TableColumn("live_metric", "float", description="newest realized value"),
        dg.TableColumn("live_trend", "float", description="newest minus oldest recent window"),
        dg.TableColumn("live_windows", "int", description="labelled days read"),
        dg.TableColumn("offline_metric", "float", description="test-set value"),
        dg.TableColumn("offline_delta", "float", description="vs the previous champion"),
        dg.TableColumn("previous_champion"),
        dg.TableColumn("drift", description="verdict of the newest drift report"),
        dg.TableColumn("drift_day"),
        dg.TableColumn(
            "requests",
            "int",
            description="predictions answered in the traffic window (a batch counts each record)",
        ),
        dg.TableColumn("days_without_traffic", "int"),
        dg.TableColumn(
            "p99_latency_ms",
            "float",
            description="over answered records (each has its request's latency); empty if unlogged",
        ),
        dg.TableColumn("gates", description="verdicts of the newest versions"),
        dg.TableColumn("gates_failed", "int"),
        dg.TableColumn("gate_failures", description="version: gate, for each failed gate"),
        dg.TableColumn(
            "gates_tampered",
            "int",
            description="versions whose evaluation.json does not match its sealed verdict",
        ),
        dg.TableColumn("tampered_versions"),
        dg.TableColumn(
            "gates_read_unchecked",
            "int",
            description="evaluated before verdicts were sealed: their evaluation.json unchecked",
        ),
        dg.TableColumn("rollbacks", "int"),
        dg.TableColumn("last_retrain", description="newest version registered at (UTC)"),
        dg.TableColumn("retirement_candidate", "bool"),
        dg.TableColumn("retirement_reasons"),
    ]
)


def _candidates_markdown(candidates: dict[str, list[str]]) -> str:
    if not candidates:
        return "No model meets the retirement policy."
    return "\n".join(f"- **{model}**: {'; '.join(why)}" for model, why in candidates.items())


def build_portfolio_defs(specs: list[ModelSpec]) -> dg.Definitions:
    """The scorecard asset over `specs`, its warning check, and its daily schedule (stopped)."""

    @dg.asset(
        key=SCORECARD_KEY,
        deps=[names.key(spec.name, asset) for spec in specs for asset in UPSTREAM],
        group_name=PORTFOLIO,
        kinds={"html"},
        io_manager_key="json_io_manager",
        description="One row per model: champion, live and offline metrics, drift, traffic, "
        "p99 latency, gate history, last retrain, and the candidates for retirement.",
    )
    def health_scorecard(
        context: dg.AssetExecutionContext,
        lifecycle: LifecycleResource,
        mlflow: MlflowResource,
        json_io_manager: dg.ResourceParam[JsonIOManager],
    ) -> dg.Output[dict[str, Any]]:
        settings, policy = lifecycle.settings(), RetirementPolicy()
        client = mlflow.client()
        today = dt.datetime.now(dt.UTC).date()
        # Live performance reports are the JSON IO manager's daily outputs: read them in place.
        root = json_io_manager.root()
        rows = [
            scorecard.model_health(
                spec,
                settings,
                client,
                root.joinpath(*names.key(spec.name, names.LIVE_PERFORMANCE).path),
                policy,
                today,
            )
            for spec in specs
        ]
        candidates = scorecard.retirement_candidates(rows, policy, today)
        page = settings.reports_dir / PORTFOLIO / "scorecard.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(scorecard_html.render_html(rows, policy, today))
        records = [scorecard.health_record(row, policy, today) for row in rows]
        summary = _candidates_markdown(candidates)
        context.log.info(summary)
        value = {
            "as_of": today.isoformat(),
            "policy": dataclasses.asdict(policy),
            "rows": records,
            "candidates": candidates,
            "html": str(page),
        }
        return dg.Output(
            value,
            metadata={
                "models": len(rows),
                "retirement_candidates": len(candidates),
                # A version whose evaluation.json no longer matches its seal, in any model.
                "gates_tampered": sum(record["gates_tampered"] for record in records),
                "scorecard": dg.MetadataValue.table(
                    [dg.TableRecord(record) for record in records], schema=_SCHEMA
                ),
                "candidates": dg.MetadataValue.md(summary),
                "html_report": dg.MetadataValue.path(str(page)),
            },
        )

    @dg.asset_check(
        asset=SCORECARD_KEY,
        name=RETIREMENT_CHECK,
        blocking=False,
        description="Warns when a model meets the retirement policy; retiring stays a human call.",
    )
    def no_retirement_candidates(health_scorecard: dict[str, Any]) -> dg.AssetCheckResult:
        candidates = health_scorecard["candidates"]
        return dg.AssetCheckResult(
            passed=not candidates,
            severity=dg.AssetCheckSeverity.WARN,
            description=_candidates_markdown(candidates),
            metadata={"candidates": dg.MetadataValue.json(candidates)},
        )

    job = dg.define_asset_job(
        SCORECARD_JOB,
        selection=dg.AssetSelection.assets(SCORECARD_KEY),
        executor_def=in_process_steps,
        description="Rebuild the portfolio health scorecard and judge the retirement policy.",
    )
    # 04:00 UTC: after the nightly monitoring (02:00) and label refresh (03:00) have run.
    schedule = dg.ScheduleDefinition(
        name="portfolio_daily_scorecard_schedule",
        job=job,
        cron_schedule="0 4 * * *",
        execution_timezone="UTC",
        description="Rebuild the portfolio health scorecard every morning.",
    )
    return dg.Definitions(
        assets=[health_scorecard],
        asset_checks=[no_retirement_candidates],
        jobs=[job],
        schedules=[schedule],
    )
