"""The registry reader through MlflowClient: the team's MLflow server, or a store `reader.py`
cannot read directly. Same answers, same types, by the slower road (MLflow imported)."""

from __future__ import annotations

import dataclasses
from typing import Any

from lifecycle_assets.registry.read_models import ModelState, RunRecord
from lifecycle_assets.registry.refs import ModelRef


class MlflowReader:
    """The same answers through MlflowClient: the team's MLflow server, or any store this
    module cannot read directly."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @staticmethod
    def _missing(error: Exception) -> bool:
        code = getattr(error, "error_code", "")
        return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")

    def version(self, name: str, version: str) -> ModelRef | None:
        from mlflow.exceptions import MlflowException

        from lifecycle_assets.registry.refs import get_version

        try:
            return get_version(self.client, name, str(version))
        except MlflowException as error:
            if self._missing(error):
                return None
            raise

    def versions(self, name: str) -> list[ModelRef]:
        from lifecycle_assets.registry.refs import filter_literal, ref_of

        matching = f"name = {filter_literal(name)}"
        found = [ref_of(v) for v in self.client.search_model_versions(matching)]
        # MLflow's search leaves a version's aliases out; the model's own list has them.
        held: dict[str, list[str]] = {}
        for alias, version in sorted((self.aliases(name) or {}).items()):
            held.setdefault(version, []).append(alias)
        refs = [dataclasses.replace(r, aliases=tuple(held.get(r.version, ()))) for r in found]
        return sorted(refs, key=lambda ref: int(ref.version))

    def resolve(self, name: str, alias_or_version: str) -> ModelRef | None:
        if alias_or_version.isdigit():
            return self.version(name, alias_or_version)
        from lifecycle_assets.registry.refs import resolve

        return resolve(self.client, name, alias_or_version)

    def aliases(self, name: str) -> dict[str, str] | None:
        state = self.model_state(name)
        return None if state is None else state.aliases

    def model_state(self, name: str) -> ModelState | None:
        """One `get_registered_model` call: one request to an MLflow server per watcher poll."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(name)
        except MlflowException as error:
            if self._missing(error):
                return None
            raise
        return ModelState(
            aliases={alias: str(version) for alias, version in (model.aliases or {}).items()},
            tags=dict(model.tags or {}),
        )

    def model_location(self, ref: ModelRef) -> str | None:
        return self.client.get_model_version_download_uri(ref.name, ref.version)

    def model_names(self) -> list[str]:
        return sorted(m.name for m in self.client.search_registered_models(max_results=1000))

    @staticmethod
    def _record(run: Any) -> RunRecord:
        return RunRecord(
            run_id=run.info.run_id,
            status=run.info.status,
            start_time=run.info.start_time,
            end_time=run.info.end_time,
            experiment_id=str(run.info.experiment_id),
            artifact_uri=run.info.artifact_uri or "",
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            datasets={
                i.dataset.name: {t.key: t.value for t in i.tags} for i in run.inputs.dataset_inputs
            },
        )

    def run(self, run_id: str) -> RunRecord | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._record(self.client.get_run(run_id))
        except MlflowException as error:
            if self._missing(error):
                return None
            raise

    def running_runs(self) -> list[RunRecord]:
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return []
        running = self.client.search_runs(
            experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000
        )
        return [self._record(run) for run in running]
