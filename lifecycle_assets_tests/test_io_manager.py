"""The JSON IO manager keeps one value per run: a run reads what it computed itself, and an
asset it did not compute comes from that asset's latest materialization."""

import json
from pathlib import Path

import dagster as dg

from lifecycle_assets.defs.names import SOURCE_RUN_TAG
from lifecycle_assets.defs.resources import JsonIOManager


def test_each_run_reads_its_own_values_and_others_read_the_latest(tmp_path: Path) -> None:
    seen: list[int] = []

    @dg.asset(key=["m", "up"], io_manager_key="json_io_manager", config_schema={"value": int})
    def up(context: dg.AssetExecutionContext) -> dict:
        return {"value": context.op_config["value"]}

    @dg.asset(
        key=["m", "down"], ins={"up": dg.AssetIn(["m", "up"])}, io_manager_key="json_io_manager"
    )
    def down(up: dict) -> dict:
        seen.append(up["value"])
        return up

    instance = dg.DagsterInstance.ephemeral()
    resources = {"json_io_manager": JsonIOManager(base_dir=str(tmp_path))}

    def run(value: int | None, selection: list, tags: dict | None = None) -> str:
        config = {"ops": {"m__up": {"config": {"value": value}}}} if value is not None else None
        result = dg.materialize(
            [up, down], selection=selection, resources=resources, instance=instance,
            run_config=config, tags=tags,
        )  # fmt: skip
        assert result.success
        return result.run_id

    first = run(1, [up, down])
    second = run(2, [up])
    run(None, [down])  # not recomputing `up`: the latest materialization, the second run's
    assert seen == [1, 2]
    folder = tmp_path / "m" / "up"
    assert {p.name for p in folder.iterdir()} == {f"{first}.json", f"{second}.json"}
    assert json.loads((folder / f"{first}.json").read_text()) == {"value": 1}

    # A run tagged with its source run reads that run's values, not whatever ran last: the
    # model card of v2 from v2's evaluation even when v3 was evaluated meanwhile.
    run(None, [down], tags={SOURCE_RUN_TAG: first})
    assert seen == [1, 2, 1]
