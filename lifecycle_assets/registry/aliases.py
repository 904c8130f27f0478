"""Move registry aliases (`champion` and friends); the only module that writes them.

Every move is recorded on the model version as tags (who, when, why, which Dagster run) so the
registry itself answers "who promoted this version".
"""

from __future__ import annotations

import datetime as dt

from mlflow import MlflowClient

from lifecycle_assets.registry.models import ModelRef, get_version, resolve


def move_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str,
    *,
    reason: str,
    actor: str,
    dagster_run_id: str = "",
) -> tuple[ModelRef | None, ModelRef]:
    """Point `alias` at `version`; return (previous holder, new holder)."""
    previous = resolve(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    tags = {
        f"{alias}_since": stamp,
        f"{alias}_by": actor,
        f"{alias}_reason": reason,
        f"{alias}_dagster_run_id": dagster_run_id,
        f"{alias}_previous_version": previous.version if previous else "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return previous, get_version(client, name, version)
