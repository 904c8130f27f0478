"""The answers every registry reader gives (`reader.py` reads SQLite directly, `mlflow_reader.py`
through MlflowClient): plain values, the same from either."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from lifecycle_assets.registry.refs import ModelRef


@dataclass(frozen=True)
class RunRecord:
    """What `MlflowClient.get_run` tells about a run, as plain values."""

    run_id: str
    status: str
    start_time: int | None
    end_time: int | None
    experiment_id: str
    artifact_uri: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    # Dataset inputs: dataset name -> the input's tags (the project tags each split's sha256).
    datasets: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelState:
    """A registered model's aliases (alias -> version) and own tags, read together: the
    service's watcher acts on both (an alias move, a canary weight) from one snapshot."""

    aliases: dict[str, str]
    tags: dict[str, str]


class RegistryReader(Protocol):
    """Read-only questions the CLI and the provenance walk ask the registry."""

    def version(self, name: str, version: str) -> ModelRef | None: ...
    def resolve(self, name: str, alias_or_version: str) -> ModelRef | None: ...
    def aliases(self, name: str) -> dict[str, str] | None: ...
    def model_state(self, name: str) -> ModelState | None: ...
    def versions(self, name: str) -> list[ModelRef]: ...
    def run(self, run_id: str) -> RunRecord | None: ...
    def running_runs(self) -> list[RunRecord]: ...
    def model_location(self, ref: ModelRef) -> str | None: ...
    def model_names(self) -> list[str]: ...
