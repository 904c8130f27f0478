"""Automated canary analysis: judge a day of canary traffic, then promote or roll back."""

from typing import Any

import dagster as dg
import polars as pl

from lifecycle_assets.config import CANARY_ALIAS, CanaryThresholds, Settings
from lifecycle_assets.data.ground_truth import (
    LABEL,
    LABELLED_AT,
    PREDICTED_AT,
    PREDICTION_ID,
    PREMATURE,
    set_aside_premature,
)
from lifecycle_assets.data.lake import PREDICTION_LOGS, Lake
from lifecycle_assets.defs import names
from lifecycle_assets.defs.assets.data import lake_for
from lifecycle_assets.defs.assets.labels import labels_received
from lifecycle_assets.defs.assets.monitoring import serving_partitions
from lifecycle_assets.defs.automation import canary_condition
from lifecycle_assets.defs.metadata import rounded
from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
from lifecycle_assets.ml.canary_analysis import CanaryVerdict, analyze_canary
from lifecycle_assets.registry.aliases import ConcurrentAliasChange
from lifecycle_assets.registry.canary import clear_canary, promote_canary
from lifecycle_assets.registry.gate_record import TamperedVerdict, gate_verdicts
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets.spec import ModelSpec

CANARY_ANALYSIS = names.CANARY_ANALYSIS


def day_with_labels(lake: Lake, day: str) -> pl.DataFrame:
    """The stored prediction log of `day`, with each row's label where one arrived (a label
    stamped before its prediction is set aside and flagged, see `set_aside_premature`)."""
    entry = lake.daily_entry(PREDICTION_LOGS, day)
    if entry is None:
        return pl.DataFrame()
    log = Lake.read_verified(entry["path"], entry["sha256"])
    if log.is_empty() or PREDICTION_ID not in log.columns or LABEL in log.columns:
        return log
    # As numbers, not classes: a regressor's labels are amounts (a loss of 2411.57).
    labels = labels_received(lake).select(
        pl.col(PREDICTION_ID).cast(pl.String), pl.col(LABEL).cast(pl.Float64), LABELLED_AT
    )
    joined = log.with_columns(pl.col(PREDICTION_ID).cast(pl.String)).join(
        labels, on=PREDICTION_ID, how="left", maintain_order="left"
    )
    if PREDICTED_AT not in joined.columns:
        return joined.drop(LABELLED_AT)
    return set_aside_premature(joined)


def apply_verdict(
    client: Any,
    spec: ModelSpec,
    verdict: CanaryVerdict,
    run_id: str,
    ledger: Ledger,
    settings: Settings | None = None,
) -> str:
    """Promote or roll back the canary the verdict is about; returns what was done.

    A canary whose gates failed (made the canary with --override-gates) is never promoted by
    the analysis: the override was a person's decision to try it, not to make it the champion
    (`lifecycle promote --override-gates` is that decision); nor is one whose recorded verdict
    no longer matches its `evaluation.json` (`registry/gate_record.py`: that fails the run).
    """
    canary = resolve(client, spec.name, CANARY_ALIAS)
    if verdict.decision == "wait" or canary is None:
        return "nothing: " + ("waiting" if canary else "no canary is set")
    if canary.version != verdict.canary_version:
        # The log judged another version than today's canary: acting would misattribute it.
        return f"nothing: the log judged v{verdict.canary_version}, the canary is v{canary.version}"
    audit = {"actor": f"dagster:{run_id}", "dagster_run_id": run_id, "ledger": ledger}
    reason = "canary analysis: " + "; ".join(verdict.reasons)
    judged = canary.version
    try:
        if verdict.decision == "promote":
            try:
                verdicts = gate_verdicts(settings or Settings.from_env(), ledger, spec.name, judged)
            except TamperedVerdict as tampered:
                raise dg.Failure(str(tampered), allow_retries=False) from None
            if failed := verdicts.failed:
                return (
                    f"nothing: canary v{judged} failed its gates ({'; '.join(failed)}); only "
                    f"`lifecycle promote {spec.name} {judged} --override-gates` makes it the "
                    "champion"
                )
            promote_canary(client, spec.name, reason=reason, expected_version=judged, **audit)
            return f"promoted v{judged} to champion"
        clear_canary(
            client, spec.name, reason=f"rolled back by {reason}", expected_version=judged, **audit
        )
    except ConcurrentAliasChange as moved:
        # Someone set another canary while this day was judged: the verdict is not about it.
        return f"nothing: the verdict on v{judged} no longer applies ({moved})"
    return f"rolled back canary v{judged}"


def build_canary_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    """The daily canary analysis of one model."""

    @dg.asset(
        key=names.key(spec.name, names.CANARY_ANALYSIS),
        partitions_def=serving_partitions(spec),
        automation_condition=canary_condition(),
        deps=[names.key(spec.name, names.PREDICTION_LOG)],
        group_name=spec.name,
        kinds={"mlflow"},
        io_manager_key="json_io_manager",
        description="Compares the canary with the champion on live traffic, then promotes "
        "the canary or rolls it back.",
    )
    def canary_analysis(
        context: dg.AssetExecutionContext, lifecycle: LifecycleResource, mlflow: MlflowResource
    ) -> dg.Output[dict[str, Any]]:
        settings = lifecycle.settings()
        log = day_with_labels(lake_for(lifecycle, spec), context.partition_key)
        verdict = analyze_canary(log, CanaryThresholds(), spec.task)
        premature = int(log[PREMATURE].sum()) if PREMATURE in log.columns else 0
        if premature:
            context.log.warning(
                f"{premature} label(s) stamped before their prediction: not used in the verdict"
            )
        client = mlflow.client()
        ledger = Ledger.for_settings(settings)
        action = apply_verdict(client, spec, verdict, context.run_id, ledger, settings)
        context.log.info(f"canary verdict {verdict.decision}: {action}")
        return dg.Output(
            {**verdict.to_dict(), "action": action},
            metadata={
                "decision": verdict.decision,
                "action": action,
                "reasons": dg.MetadataValue.json(list(verdict.reasons)),
                "canary_version": verdict.canary_version or "none",
                "canary_rows": verdict.canary.rows,
                "champion_rows": verdict.champion.rows,
                "premature_labels": premature,
                "score_psi": rounded(verdict.score_psi) if verdict.score_psi is not None else "n/a",
            },
        )

    return [canary_analysis]
