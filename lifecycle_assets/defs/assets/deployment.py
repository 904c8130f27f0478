"""Promotion to `champion` (only past every gate) and the Bento built for the champion."""

from typing import Any

import dagster as dg

from lifecycle_assets import config, storage
from lifecycle_assets.defs import names
from lifecycle_assets.defs.io_retry import io_retry
from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
from lifecycle_assets.ml.evaluation import EvaluationReport
from lifecycle_assets.ml.gates import all_gates
from lifecycle_assets.registry.aliases import ConcurrentAliasChange, move_alias
from lifecycle_assets.registry.gate_record import TamperedVerdict, gate_verdicts
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets.spec import ModelSpec, configured_specs


def portfolio_names(spec: ModelSpec) -> list[str]:
    """The project's other models (`LIFECYCLE_SPECS`), whose champions share the Bento."""
    return [other.name for other in configured_specs() if other.name != spec.name]


def _refusal(reason: str) -> dg.Failure:
    """A failure that is a verdict (not promoted, by rule), never retried."""
    return dg.Failure(
        f"{names.REFUSAL_PREFIX}{reason}",
        allow_retries=False,
        metadata={names.REFUSED_METADATA_KEY: True},
    )


def build_deployment_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    """`champion_model` and `bento_service` of one model."""

    @dg.asset(
        key=names.key(spec.name, names.CHAMPION_MODEL),
        ins={
            "evaluation_report": dg.AssetIn(names.key(spec.name, names.EVALUATION_REPORT)),
            "training_set": dg.AssetIn(names.key(spec.name, names.TRAINING_SET)),
        },
        group_name=spec.name,
        pool=names.training_pool(spec.name),
        kinds={"mlflow"},
        io_manager_key="json_io_manager",
        description="Moves the `champion` alias to the evaluated version once every gate passed.",
    )
    def champion_model(
        context: dg.AssetExecutionContext,
        lifecycle: LifecycleResource,
        mlflow: MlflowResource,
        evaluation_report: dict[str, Any],
        training_set: dict[str, Any],
    ) -> dg.Output[dict[str, Any]]:
        # Blocking checks stop this step within a run; re-judging here also stops a run that
        # targets this asset alone, so a failed gate can never be promoted around. The
        # verdicts recorded with the evaluation count too: they were judged with the
        # thresholds of the spec that trained the version (`lifecycle run --spec`, a spec
        # since edited), which this code location's spec may loosen.
        report = EvaluationReport.from_dict(evaluation_report["report"])
        verdicts = all_gates(
            report,
            training_set["split_stats"],
            spec.gate_thresholds(),
            training_set.get("quarantine"),
        )
        failed = {g.name: g.description for g in verdicts if not g.passed}
        candidate = evaluation_report["model"]
        settings = lifecycle.settings()
        ledger = Ledger.for_settings(settings)  # the seal is read where the move is recorded
        try:  # the recorded verdicts, their file checked against the ledger's seal
            recorded = gate_verdicts(settings, ledger, spec.name, candidate["version"])
        except TamperedVerdict as tampered:
            raise _refusal(str(tampered)) from None
        if recorded.unsealed:
            context.log.warning(recorded.unsealed)
        for gate in recorded.gates:
            if not gate.get("passed"):
                failed.setdefault(gate["name"], f"{gate.get('description', '')} (as evaluated)")
        if failed:
            raise _refusal("; ".join(f"{name}: {why}" for name, why in failed.items()))
        client = mlflow.client()
        try:
            previous, current = move_alias(
                client,
                spec.name,
                config.CHAMPION_ALIAS,
                candidate["version"],
                reason="passed gates: " + ", ".join(g.name for g in verdicts),
                actor=f"dagster:{context.run_id}",
                dagster_run_id=context.run_id,
                # Refused if the champion moved since this run's gates compared against it.
                expected_version=report.champion.champion_version if report.champion else None,
                ledger=ledger,
            )
        except ConcurrentAliasChange as moved:
            # Its gates compared against a champion that is gone: judged again by the next run.
            raise _refusal(f"{moved}; the next run compares against the new champion") from None
        return dg.Output(
            {"champion": current.to_dict(), "previous": previous.version if previous else None},
            metadata={
                "champion_version": current.version,
                "previous_champion": previous.version if previous else "none",
                "mlflow_run": mlflow.run_link(current.run_id),
                "artifact_sha256": current.artifact_sha256,
            },
        )

    @dg.asset(
        key=names.key(spec.name, names.BENTO_SERVICE),
        ins={"champion_model": dg.AssetIn(names.key(spec.name, names.CHAMPION_MODEL))},
        group_name=spec.name,
        kinds={"bentoml"},
        io_manager_key="json_io_manager",
        description="A self-contained Bento (`bentoml build`) carrying the champion model, "
        "exported to object storage in team mode.",
    )
    @io_retry
    def bento_service(
        context: dg.AssetExecutionContext,
        mlflow: MlflowResource,
        lifecycle: LifecycleResource,
        champion_model: dict[str, Any],
    ) -> dg.Output[dict[str, Any]]:
        # BentoML (about 1 s to import) loads in the step that builds, not in every process
        # that loads the definitions; `lifecycle run` imports it beside its first ingest.
        from lifecycle_assets.serving.bento_store import (
            build_bento,
            export_to_storage,
            exported_tag,
            serve_command,
        )

        client = mlflow.client()
        champion = champion_model["champion"]
        ref = resolve(client, spec.name, config.CHAMPION_ALIAS)
        if ref is None or ref.version != champion["version"]:
            raise dg.Failure(
                f"champion moved since promotion (now {ref and ref.version})", allow_retries=False
            )
        # One Bento serves the portfolio: this champion plus the other models' current ones,
        # each exported to the model store once per version.
        others = [resolve(client, name, config.CHAMPION_ALIAS) for name in portfolio_names(spec)]
        model_tags = [exported_tag(r) for r in (ref, *others) if r is not None]
        model_tag = model_tags[0]
        settings = lifecycle.settings()
        bento_tag = build_bento(settings.project_dir, model_tags)
        client.set_model_version_tag(spec.name, ref.version, config.TAG_BENTO_TAG, bento_tag)
        context.log.info(f"built {bento_tag} with {model_tags}")
        value = {
            "bento_tag": bento_tag,
            "model_tag": model_tag,
            "model_tags": model_tags,
            "model_version": ref.version,
        }
        metadata = {
            "bento_tag": bento_tag,
            "bentoml_model_tag": model_tag,
            "bentoml_model_tags": ", ".join(model_tags),
            "model_version": ref.version,
            "serve": serve_command(bento_tag),
        }
        bentos_dir = settings.bentos_dir
        if storage.is_remote(bentos_dir):
            # Other hosts serve this Bento: they import the archive, checking its SHA-256.
            exported = export_to_storage(bento_tag, bentos_dir)
            for tag, text in (
                (config.TAG_BENTO_URL, exported.url),
                (config.TAG_BENTO_SHA256, exported.sha256),
            ):
                client.set_model_version_tag(spec.name, ref.version, tag, text)
            value.update(bento_url=exported.url, bento_sha256=exported.sha256)
            metadata.update(bento_url=exported.url, bento_sha256=exported.sha256)
            context.log.info(f"exported {bento_tag} to {exported.url}")
        return dg.Output(value, metadata=metadata)

    return [champion_model, bento_service]
