"""`RegistryChange`: one alias move and the tags that travel with it, as data.

An alias move writes more than the alias: the new holder is stamped with who, when and why,
and a canary carries its traffic weight on the registered model. Describing the whole change
as one value lets each writer apply it the best way its store allows: the SQLite writer in one
transaction (a service never sees the new canary with the old weight), MlflowClient call by
call in the same order (a crash in between is settled by `aliases.reconcile`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class RegistryChange:
    """What to write on one registered model, in this order: aliases (a version, or None to
    delete), model-version tags (version -> key -> value), registered-model tags (None deletes)."""

    model: str
    aliases: Mapping[str, str | None] = field(default_factory=dict)
    version_tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    model_tags: Mapping[str, str | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.aliases or self.version_tags or self.model_tags)


class RegistryWriter(Protocol):
    """Applies a change to the registry; raises (and writes nothing it can undo) on refusal."""

    def apply(self, change: RegistryChange) -> None: ...


class MlflowWriter:
    """A change through MlflowClient, call by call: the team's MLflow server (its webhooks fire
    server-side), or a SQLite file the direct writer does not know."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def apply(self, change: RegistryChange) -> None:
        client, name = self.client, change.model
        for alias, version in change.aliases.items():
            if version is None:
                client.delete_registered_model_alias(name, alias)
            else:
                client.set_registered_model_alias(name, alias, version)
        for version, tags in change.version_tags.items():
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, value)
        deleted = [key for key, value in change.model_tags.items() if value is None]
        # A REST store refuses to delete a tag that is not there; the SQLite writer ignores it.
        present = (client.get_registered_model(name).tags or {}) if deleted else {}
        for key, value in change.model_tags.items():
            if value is not None:
                client.set_registered_model_tag(name, key, value)
            elif key in present:
                client.delete_registered_model_tag(name, key)


def writer_of(client: Any) -> RegistryWriter:
    """The writer that goes with a client: the one it carries (`registry_client`'s SQLite
    registry), else MlflowClient's calls."""
    return getattr(client, "writer", None) or MlflowWriter(client)
