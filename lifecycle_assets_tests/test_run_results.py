"""What `lifecycle run` reads back from a finished run: here, the line a training step observes
when another run already registered this very training (`registry.same_training`), read from a
real in-process Dagster run."""

import dagster as dg

from lifecycle_assets.defs import names
from lifecycle_assets.run_results import already_registered_line

LINE = "v3 already holds this training (run abc)"


def _run(observed: dict[str, str]) -> dg.ExecuteInProcessResult:
    @dg.asset
    def trained_model(context: dg.AssetExecutionContext) -> None:
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=observed))

    return dg.materialize([trained_model], instance=dg.DagsterInstance.ephemeral())


def test_the_line_of_a_training_another_run_registered_is_read_back() -> None:
    assert already_registered_line(_run({names.SAME_TRAINING_METADATA_KEY: LINE})) == LINE


def test_no_line_without_that_observation() -> None:
    assert already_registered_line(_run({"model_version": "3"})) is None
