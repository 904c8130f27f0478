"""The gate verdicts recorded with a version's evaluation, for a promotion by hand.

`champion_model` promotes only past every gate, but `lifecycle promote` (and the promote job)
can point `champion` at any version that verifies, including one its gates refused, and
`lifecycle canary` (and the canary job) can send it live traffic. That stays possible, as a
person's decision, but never by accident: a version whose evaluation recorded a failed gate is
refused as `champion` or `canary` (the aliases that answer requests) unless the caller says it
overrides them, and then the failed gates are written into the ledger's reason, so the audit
trail names what was overridden. The shadow answers nobody and the challenger is a label.
"""

from __future__ import annotations

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.evaluation_file import load_evaluation
from lifecycle_assets.registry.ledger import AliasError
from lifecycle_assets.registry.reader import local_or_stored, reader_for

# The aliases whose holder answers requests: a gate-refused version needs an override.
GATED_ALIASES = (config.CHAMPION_ALIAS, config.CANARY_ALIAS)


class FailedGates(AliasError):
    """The version's evaluation recorded failed gates and no override was given."""


def failed_gates(settings: Settings, name: str, version: str) -> list[str]:
    """`name: description` of each gate the version's evaluation recorded as failed; [] when
    all passed or no evaluation is recorded (a version registered outside `lifecycle run`)."""
    reader = reader_for(settings)
    ref = reader.version(name, version)
    if ref is None:
        return []  # the alias move names the missing version
    run = reader.run(ref.run_id) if ref.run_id else None
    evaluation, _ = load_evaluation(
        settings.reports_dir, name, version, ref.run_id or None, run_first=True,
        run_artifacts=local_or_stored(run.artifact_uri) if run is not None else None,
    )  # fmt: skip
    gates = (evaluation or {}).get("gates", [])
    return [f"{g.get('name')}: {g.get('description', '')}" for g in gates if not g.get("passed")]


def promotion_reason(
    settings: Settings,
    name: str,
    version: str,
    reason: str,
    *,
    override: bool,
    alias: str = config.CHAMPION_ALIAS,
) -> str:
    """The ledger reason of a move of `alias` (`champion`, `canary`) by hand; FailedGates when
    the version's gates failed and `override` is not set (the message says how to override).
    Other aliases serve no answer: their reason is kept as given."""
    if alias not in GATED_ALIASES:
        return reason
    failed = failed_gates(settings, name, version)
    if not failed:
        return reason
    if not override:
        anyway = "promote it" if alias == config.CHAMPION_ALIAS else "make it the canary"
        raise FailedGates(
            f"{name} v{version} failed its gates ({'; '.join(failed)}); nothing was changed: "
            f"{anyway} anyway with --override-gates (the override is kept in the ledger)"
        )
    return f"{reason} (overriding failed gates: {'; '.join(failed)})"
