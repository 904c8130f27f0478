"""The gate verdicts recorded with a version's evaluation: the one door every reader goes through.

`champion_model` promotes only past every gate, but `lifecycle promote` (and the promote job)
can point `champion` at any version that verifies, including one its gates refused, and
`lifecycle canary` (and the canary job) can send it live traffic. That stays possible, as a
person's decision, but never by accident: a version whose evaluation recorded a failed gate is
refused as `champion` or `canary` (the aliases that answer requests) unless the caller says it
overrides them, and then the failed gates are written into the ledger's reason, so the audit
trail names what was overridden. The shadow answers nobody and the challenger is a label.

The verdicts are read from the version's `evaluation.json` in the artifact store, which anyone
who can write there could edit; so the file is checked against the SHA-256 the evaluation asset
sealed in the platform's own append-only record (`verdicts.py`). A file that does not match
(edited, replaced, deleted) refuses the promotion, override or not. A version evaluated before
verdicts were recorded has no seal: its file is read as it is, and the caller is told so (the
evaluation seals before it writes, so a crash cannot leave a file without its seal).

A version no gate has judged (no seal and no file) is one of two things. Registered by a
training run that ended before its evaluation (it carries its training's `training_key`, by
which the next run of that training finds it): it is refused as `champion` or `canary` unless
overridden, like a failed gate, and the next run of the same training evaluates it
(`unmatched_seal`). Registered outside `lifecycle run`: moving an alias to it stays a person's
decision, and the note says that no gate judged it.

The record is read from the caller's ledger, the one it moves aliases in: one door to each
external system, never a second connection built from the settings behind the caller's back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.evaluation_file import read_evaluation
from lifecycle_assets.registry.ledger import AliasError, Ledger
from lifecycle_assets.registry.reader import local_or_stored, reader_for
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.same_training import TAG_TRAINING_KEY
from lifecycle_assets.registry.verdicts import recorded_verdict
from lifecycle_assets.storage import sha256_bytes

# The aliases whose holder answers requests: a gate-refused version needs an override.
GATED_ALIASES = (config.CHAMPION_ALIAS, config.CANARY_ALIAS)


class FailedGates(AliasError):
    """The version's evaluation recorded failed gates and no override was given."""


class TamperedVerdict(AliasError):
    """The version's `evaluation.json` is not the file whose verdict the ledger recorded."""


@dataclass(frozen=True)
class GateVerdicts:
    """What a version's evaluation says of its gates, once checked against the record.

    `gates` are `GateResult.to_dict()`s; `unsealed` says why the file could not be checked (a
    version evaluated before verdicts were recorded), '' when it was.
    """

    gates: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    unsealed: str = ""
    # Why no gate has judged the version ('' when one did), and whether a training run of the
    # platform registered it (then it is refused unjudged, like a failed gate).
    unjudged: str = ""
    by_training: bool = False

    @property
    def failed(self) -> list[str]:
        """`name: description` of each failed gate."""
        failed = [g for g in self.gates if not g.get("passed")]
        return [f"{g.get('name')}: {g.get('description', '')}" for g in failed]


def gate_verdicts(settings: Settings, ledger: Ledger, name: str, version: str) -> GateVerdicts:
    """The version's recorded gate verdicts, its `evaluation.json` checked against the SHA-256
    recorded in `ledger`'s database; TamperedVerdict (one line: the file, the recorded and
    the found hash) when they differ or the file is gone. A version with neither file nor
    record has no gates, and `unjudged` says why (`by_training`: its training run ended before
    its evaluation; else it was registered outside `lifecycle run`)."""
    reader = reader_for(settings)
    ref = reader.version(name, version)
    if ref is None:
        return GateVerdicts()  # the alias move names the missing version
    run = reader.run(ref.run_id) if ref.run_id else None
    found, source = read_evaluation(
        settings.reports_dir, name, version, ref.run_id or None, run_first=True,
        run_artifacts=local_or_stored(run.artifact_uri) if run is not None else None,
    )  # fmt: skip
    unsealed = check_seal(ledger, ref, found, source)
    if found is None:  # and, check_seal passed, no seal either
        by_training = bool({TAG_TRAINING_KEY, config.TAG_VERDICT_SEALED} & set(ref.tags))
        unjudged = (_ENDED_BEFORE_EVALUATION if by_training else _OUTSIDE).format(
            name=name, version=version
        )
        return GateVerdicts(unjudged=unjudged, by_training=by_training)
    return GateVerdicts(json.loads(found).get("gates", []), source, unsealed)


def check_seal(ledger: Ledger, ref: ModelRef, found: bytes | None, source: str) -> str:
    """'' when `found` (the bytes of the version's `evaluation.json`, read at `source`; None
    when there is none) is the file whose verdict the ledger recorded; a note when no verdict
    was recorded (evaluated before they were, or never evaluated: '' then too); else
    TamperedVerdict, one line naming the file, the recorded and the found hash. A version
    registered to be sealed (`verdict_sealed`) whose file has no record is TamperedVerdict too:
    its record was lost (the verdict table dropped or restored from an older copy), and taking
    it for a version evaluated before seals would read an unchecked file."""
    name, version = ref.name, str(ref.version)
    record = recorded_verdict(ledger, name, version)
    if record is None and found is not None and config.TAG_VERDICT_SEALED in ref.tags:
        raise TamperedVerdict(
            f"{source} has no gate verdict in the ledger, though {name} v{version} was "
            "registered to have its verdict sealed there (the record is lost: the verdict "
            "table dropped or restored from an older copy?); nothing was changed"
        )
    if record is None:
        return "" if found is None else _UNSEALED.format(name=name, version=version)
    digest = None if found is None else sha256_bytes(found)
    if digest != record.sha256:
        shown = source or f"the evaluation.json of {name} v{version} (recorded as {record.file})"
        raise TamperedVerdict(
            f"{shown} does not match the gate verdict the ledger recorded for {name} "
            f"v{version}: recorded sha256 {record.sha256}, found {digest or 'no file'}; "
            "nothing was changed"
        )
    return ""


def unmatched_seal(settings: Settings, ledger: Ledger, name: str, version: str) -> str:
    """Why the version must be evaluated (again): its sealed verdict matches no `evaluation.json`
    (a run killed between sealing and writing it, or a file edited or deleted since), or its
    training run ended before evaluating it; '' when its evaluation stands (sealed and matching,
    or evaluated before verdicts were recorded) or it was registered outside `lifecycle run`."""
    try:
        verdicts = gate_verdicts(settings, ledger, name, version)
    except TamperedVerdict as unmatched:
        return str(unmatched).removesuffix("; nothing was changed")
    return verdicts.unjudged if verdicts.by_training else ""


_ENDED_BEFORE_EVALUATION = (
    "{name} v{version} was registered by a training run that ended before its evaluation: no "
    "gate has judged it"
)
_OUTSIDE = (
    "{name} v{version} has no gate verdict: it was registered outside `lifecycle run`, so no "
    "gate judged it"
)
_UNSEALED = (
    "{name} v{version} was evaluated before gate verdicts were recorded in the ledger: its "
    "evaluation.json is read unchecked"
)


def promotion_reason(
    settings: Settings,
    name: str,
    version: str,
    reason: str,
    *,
    override: bool,
    ledger: Ledger,
    alias: str = config.CHAMPION_ALIAS,
) -> tuple[str, str]:
    """The ledger reason of a move of `alias` (`champion`, `canary`) by hand, and a note for the
    person ('' or why the verdicts were read unchecked or are none); FailedGates when the
    version's gates failed, or its training run ended before evaluating it, and `override` is
    not set (the message says how to override); TamperedVerdict whatever `override` says when
    its evaluation file does not match the ledger's record. Other aliases serve no answer:
    their reason is kept as given."""
    if alias not in GATED_ALIASES:
        return reason, ""
    verdicts = gate_verdicts(settings, ledger, name, version)
    anyway = "promote it" if alias == config.CHAMPION_ALIAS else "make it the canary"
    if verdicts.by_training:
        if not override:
            raise FailedGates(
                f"{verdicts.unjudged}; nothing was changed: the next `lifecycle run` evaluates "
                f"it while its training is unchanged, or {anyway} anyway with --override-gates "
                "(the override is kept in the ledger)"
            )
        return f"{reason} (overriding: never evaluated, no gate judged it)", ""
    failed = verdicts.failed
    if not failed:
        return reason, verdicts.unsealed or verdicts.unjudged
    if not override:
        raise FailedGates(
            f"{name} v{version} failed its gates ({'; '.join(failed)}); nothing was changed: "
            f"{anyway} anyway with --override-gates (the override is kept in the ledger)"
        )
    return f"{reason} (overriding failed gates: {'; '.join(failed)})", verdicts.unsealed
