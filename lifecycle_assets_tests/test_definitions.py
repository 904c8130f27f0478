"""The code location loads, names itself consistently and describes every object."""

import tomllib
from pathlib import Path

import dagster as dg
import yaml

from lifecycle_assets.definitions import build_definitions, defs
from lifecycle_assets.defs import names
from lifecycle_assets.ml import gates

ROOT = Path(__file__).resolve().parents[1]


def _repository(spec) -> dg.RepositoryDefinition:
    return build_definitions([spec]).get_repository_def()


def test_code_location_name_is_the_same_everywhere() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]
    assert module["location_name"] == project["code_location_name"]
    assert module["module_name"] == project["code_location_target_module"]


def test_code_location_loads_the_default_spec(monkeypatch) -> None:
    monkeypatch.delenv("LIFECYCLE_SPECS", raising=False)
    loaded = defs() if callable(defs) else defs
    keys = loaded.resolve_asset_graph().get_all_asset_keys()
    assert dg.AssetKey(["credit_default", "raw_batches"]) in keys
    assert dg.AssetKey(["credit_default", "bento_service"]) in keys


def test_every_object_has_a_description(spec) -> None:
    repo = _repository(spec)
    graph = repo.asset_graph
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description, f"{key.to_user_string()} has no description"
    for check_key in graph.asset_check_keys:
        assert graph.get_check_spec(check_key).description, f"{check_key} has no description"
    for job in repo.get_all_jobs():
        if not job.name.startswith("__"):
            assert job.description, f"{job.name} has no description"
    for schedule in repo.schedule_defs:
        assert schedule.description, f"{schedule.name} has no description"
    assert repo.sensor_defs, "the new-data sensor is defined"
    for sensor in repo.sensor_defs:
        assert sensor.description, f"{sensor.name} has no description"


def test_gates_are_blocking_checks_before_promotion(spec) -> None:
    graph = _repository(spec).asset_graph
    checks = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    data_checks = (names.RAW_SCHEMA_CHECK, names.FEATURE_SCHEMA_CHECK, names.PARITY_CHECK)
    for name in (*gates.GATE_NAMES, *data_checks):
        assert checks[name].blocking, f"{name} must block what comes after it"
    champion = graph.get(names.key(spec.name, names.CHAMPION_MODEL))
    assert names.key(spec.name, names.EVALUATION_REPORT) in champion.parent_keys


def test_code_location_loads_with_monitoring_more_often_than_the_freshness_grace(spec) -> None:
    """A spec may monitor hourly (or at two hours of the day): the monitoring assets' freshness
    policy must not fail the whole code location by asking for a lower bound longer than the
    gap between two monitoring runs."""
    for cron in ("0 * * * *", "0 2,3 * * *", "*/4 * * * *"):
        hourly = spec.model_copy(
            update={"schedules": spec.schedules.model_copy(update={"monitoring_cron": cron})}
        )
        graph = _repository(hourly).asset_graph
        policy = graph.get(names.key(spec.name, names.DRIFT_REPORT)).freshness_policy
        assert policy is not None, cron
