"""`ModelRef`, a registered model version as the project passes it around.

Its own module, free of MLflow, scikit-learn and pandas, so the read-only registry reader and
the CLI's fast commands can hand out the same type as `registry.models` without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lifecycle_assets import config


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and the provenance recorded with it."""

    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    # When the version was registered (ms since the epoch), as the registry recorded it.
    created_ms: int | None = field(default=None, compare=False)

    @property
    def artifact_sha256(self) -> str:
        return self.tags.get(config.TAG_ARTIFACT_SHA256, "")

    @property
    def training_digest(self) -> str:
        return self.tags.get(config.TAG_TRAINING_DIGEST, "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
        }


def filter_literal(value: str) -> str:
    """`value` quoted for an MLflow search filter. Its grammar has no escape (the text between
    the quotes is taken verbatim), so the quote used is one the value does not hold."""
    for quote in ("'", '"'):
        if quote not in value:
            return f"{quote}{value}{quote}"
    raise ValueError(f"{value!r} holds both quotes: no MLflow search filter can name it")


def ref_of(version: Any) -> ModelRef:
    """A ModelRef from MLflow's `ModelVersion`."""
    return ModelRef(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id or "",
        source=version.source,
        tags=dict(version.tags or {}),
        aliases=tuple(sorted(getattr(version, "aliases", ()) or ())),
        created_ms=getattr(version, "creation_timestamp", None),
    )


def get_version(client: Any, name: str, version: str) -> ModelRef:
    """The version through an MLflow client; raises MlflowException when there is none."""
    return ref_of(client.get_model_version(name, version))


def resolve(client: Any, name: str, alias_or_version: str) -> ModelRef | None:
    """A version number or an alias; None when the alias is not set (no champion yet)."""
    if alias_or_version.isdigit():
        return get_version(client, name, alias_or_version)
    from mlflow.exceptions import MlflowException  # a client exists: MLflow is loaded

    try:
        return ref_of(client.get_model_version_by_alias(name, alias_or_version))
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
