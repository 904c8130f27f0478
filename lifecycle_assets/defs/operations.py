"""Deployment operations as Dagster jobs, each recorded on the model's `bento_service` asset.

Every job runs the same registry function as the `lifecycle` command, as actor
`dagster:<run_id>`, and logs an AssetObservation on `bento_service`, so the asset's page in the
UI is the model's deployment history.
"""

from typing import Any

import dagster as dg

from lifecycle_assets.config import (
    CANARY_ALIAS,
    CHAMPION_ALIAS,
    DEFAULT_SERVICE_URL,
    SHADOW_ALIAS,
    Settings,
)
from lifecycle_assets.defs import names
from lifecycle_assets.defs.executors import in_process_steps
from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
from lifecycle_assets.registry import aliases, canary, retire
from lifecycle_assets.registry.gate_record import promotion_reason
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.spec import ModelSpec


class PromoteConfig(dg.Config):
    """Which version gets the alias, and why."""

    version: str
    alias: str = CHAMPION_ALIAS
    reason: str = "promoted from Dagster"
    expected_version: str | None = None
    # A version whose evaluation recorded a failed gate becomes `champion` only with this set;
    # the failed gates are then written into the ledger's reason.
    override_gates: bool = False


class RollbackConfig(dg.Config):
    """Roll `alias` back to its previous holder, or to `to_version`."""

    to_version: str | None = None
    alias: str = CHAMPION_ALIAS
    reason: str = "rolled back from Dagster"


class CanaryConfig(dg.Config):
    """Set the canary to `version` at `weight`, or clear it."""

    version: str | None = None
    weight: float = 0.1
    clear: bool = False
    reason: str = "canary from Dagster"
    # As for a promotion: a version whose evaluation recorded a failed gate becomes the canary
    # only with this set, and the failed gates are written into the ledger's reason.
    override_gates: bool = False


class ShadowConfig(dg.Config):
    """Set the shadow to `version`, or clear it."""

    version: str | None = None
    clear: bool = False
    reason: str = "shadow from Dagster"


class RetireConfig(dg.Config):
    """Retire `version`; `service_url` is asked what it serves ('' to skip)."""

    version: str
    reason: str = "retired from Dagster"
    service_url: str = DEFAULT_SERVICE_URL


def record_operation(
    context: dg.OpExecutionContext,
    spec: ModelSpec,
    operation: str,
    alias: str,
    previous: ModelRef | None,
    current: ModelRef | None,
    reason: str,
    **details: Any,
) -> None:
    """Log the change (`previous` to `current` holder) as an observation of `bento_service`."""
    metadata = {
        "operation": operation,
        "alias": alias,
        "from": previous.version if previous else None,
        "to": current.version if current else None,
        "reason": reason,
        **details,
    }
    context.log_event(
        dg.AssetObservation(
            asset_key=names.key(spec.name, names.BENTO_SERVICE),
            description=f"{operation} `{alias}` of {spec.name}",
            metadata={k: "none" if v is None else v for k, v in metadata.items()},
        )
    )


def _ended(move: aliases.AliasMove) -> dict[str, str]:
    """`ended` for the observation when the new champion ended its canary or shadow."""
    if not move.ended:
        return {}
    return {"ended": ", ".join(f"{alias} v{version}" for alias, version in move.ended.items())}


def _audit(context: dg.OpExecutionContext, settings: Settings) -> dict[str, Any]:
    return {
        "actor": f"dagster:{context.run_id}",
        "dagster_run_id": context.run_id,
        "ledger": Ledger.for_settings(settings),
    }


def build_operation_jobs(spec: ModelSpec) -> list[dg.JobDefinition]:
    """Promote, rollback, canary, shadow and retire jobs of one model."""
    name = spec.name

    @dg.op(name=f"{name}_promote", description=f"Points an alias of {name} at a version.")
    def promote_op(
        context: dg.OpExecutionContext,
        config: PromoteConfig,
        lifecycle: LifecycleResource,
        mlflow: MlflowResource,
    ) -> None:
        settings = lifecycle.settings()
        audit = _audit(context, settings)
        expected = (
            aliases.ANY_VERSION if config.expected_version is None else config.expected_version
        )
        reason, note = promotion_reason(
            settings, name, config.version, config.reason, override=config.override_gates,
            ledger=audit["ledger"], alias=config.alias,
        )  # fmt: skip
        if note:
            context.log.warning(note)
        move = aliases.move_alias(
            mlflow.client(), name, config.alias, config.version, reason=reason,
            expected_version=expected, **audit,
        )  # fmt: skip
        record_operation(
            context, spec, "promote", config.alias, *move, config.reason, **_ended(move)
        )

    @dg.op(name=f"{name}_rollback", description=f"Moves an alias of {name} back in the ledger.")
    def rollback_op(
        context: dg.OpExecutionContext,
        config: RollbackConfig,
        lifecycle: LifecycleResource,
        mlflow: MlflowResource,
    ) -> None:
        settings = lifecycle.settings()
        move = aliases.rollback(
            mlflow.client(), name, reason=config.reason, to_version=config.to_version,
            alias=config.alias, **_audit(context, settings),
        )  # fmt: skip
        record_operation(
            context, spec, "rollback", config.alias, *move, config.reason, **_ended(move)
        )

    @dg.op(name=f"{name}_canary", description=f"Sets or clears the canary of {name}.")
    def canary_op(
        context: dg.OpExecutionContext,
        config: CanaryConfig,
        lifecycle: LifecycleResource,
        mlflow: MlflowResource,
    ) -> None:
        settings = lifecycle.settings()
        client, audit = mlflow.client(), _audit(context, settings)
        if config.clear:
            previous = canary.clear_canary(client, name, reason=config.reason, **audit)
            current, weight = None, 0.0
        else:
            if config.version is None:
                raise dg.Failure("give a version, or clear: true", allow_retries=False)
            reason, note = promotion_reason(
                settings, name, config.version, config.reason, override=config.override_gates,
                ledger=audit["ledger"], alias=CANARY_ALIAS,
            )  # fmt: skip
            if note:
                context.log.warning(note)
            previous, current = canary.set_canary(
                client, name, config.version, config.weight, reason=reason, **audit
            )
            weight = config.weight
        record_operation(
            context, spec, "canary", CANARY_ALIAS, previous, current, config.reason, weight=weight
        )

    @dg.op(name=f"{name}_shadow", description=f"Sets or clears the shadow of {name}.")
    def shadow_op(
        context: dg.OpExecutionContext,
        config: ShadowConfig,
        lifecycle: LifecycleResource,
        mlflow: MlflowResource,
    ) -> None:
        settings = lifecycle.settings()
        client, audit = mlflow.client(), _audit(context, settings)
        if config.clear:
            previous = canary.clear_shadow(client, name, reason=config.reason, **audit)
            current = None
        else:
            if config.version is None:
                raise dg.Failure("give a version, or clear: true", allow_retries=False)
            previous, current = canary.set_shadow(
                client, name, config.version, reason=config.reason, **audit
            )
        record_operation(context, spec, "shadow", SHADOW_ALIAS, previous, current, config.reason)

    @dg.op(name=f"{name}_retire", description=f"Archives a version of {name} for good.")
    def retire_op(
        context: dg.OpExecutionContext,
        config: RetireConfig,
        lifecycle: LifecycleResource,
        mlflow: MlflowResource,
    ) -> None:
        settings = lifecycle.settings()
        done = retire.retire(
            mlflow.client(), name, config.version, reason=config.reason,
            service_url=config.service_url or None, settings=settings,
            **_audit(context, settings),
        )  # fmt: skip
        record_operation(
            context, spec, "retire", "none", done.ref, None, config.reason,
            archive=dg.MetadataValue.path(str(done.archive_dir)),
            artifact_sha256=done.manifest["artifact_sha256"], service=done.service.note,
        )  # fmt: skip

    def job(op: dg.OpDefinition, operation: str, description: str) -> dg.JobDefinition:
        @dg.job(
            name=f"{name}_{operation}_job",
            executor_def=in_process_steps,
            description=description,
            tags={"lifecycle/operation": operation},
        )
        def operation_job() -> None:
            op()

        return operation_job

    return [
        job(promote_op, "promote", f"Points an alias of {name} at a version, in the ledger."),
        job(rollback_op, "rollback", f"Moves `champion` of {name} back to the previous one."),
        job(canary_op, "canary", f"Sends a share of {name}'s traffic to a canary, or stops."),
        job(shadow_op, "shadow", f"Lets a version of {name} score traffic silently, or stops."),
        job(retire_op, "retire", f"Archives an unused version of {name} for good."),
    ]
