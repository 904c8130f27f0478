"""A model card run that fails is requested again by the card sensor, after a backoff, a bounded
number of times; a version that keeps failing is reported by name with its last error. Before,
the sensor's cursor had moved past the evaluation and the version stayed without a card for
ever. The sensor is ticked against a real Dagster instance and the card runs really execute
(and really fail: their evaluation's value is unreadable)."""

import dagster as dg
import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import card_retries, names
from lifecycle_assets.defs.jobs import model_card_job_name
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_sensors import _evaluated

VERSION = "5"


def test_a_failed_card_run_is_retried_with_backoff_then_reported(
    spec: ModelSpec, lifecycle_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs = build_definitions([spec])
    sensor = defs.get_sensor_def(f"{spec.name}_model_card_sensor")
    card_job = defs.resolve_job_def(model_card_job_name(spec))
    monkeypatch.setattr(card_retries, "CARD_RETRY_BACKOFF_SECONDS", 3600.0)
    with dg.instance_for_test() as instance:
        cursor: str | None = None

        def tick() -> dg.SensorResult:
            nonlocal cursor
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            result = sensor.evaluate_tick(context)
            cursor = result.cursor if result.cursor is not None else cursor
            return result

        def launch(request: dg.RunRequest) -> str:
            """What the daemon does with a request: run the card job with its tags."""
            result = card_job.execute_in_process(
                instance=instance, tags=request.tags, raise_on_error=False
            )
            assert not result.success
            return result.run_id

        assert tick().skip_message == "nothing evaluated yet"
        _evaluated(instance, spec, VERSION, {})
        (first,) = tick().run_requests
        assert first.run_key == f"model-card-v{VERSION}"
        failed = launch(first)

        # Within the backoff: nothing requested, and the tick says which version failed, why.
        waiting = tick()
        assert not waiting.run_requests
        assert f"v{VERSION}'s card run {failed} failed (attempt 1 of 4): " in waiting.skip_message
        assert "evaluation_report has not been materialized yet" in waiting.skip_message

        monkeypatch.setattr(card_retries, "CARD_RETRY_BACKOFF_SECONDS", 0.0)
        keys = [first.run_key]
        for _attempt in range(1, card_retries.CARD_RETRIES + 1):
            (retry,) = tick().run_requests
            keys.append(retry.run_key)
            assert retry.tags == first.tags, "the retry reads the same evaluation run"
            # Requested, not yet launched: no second request for the same failure.
            assert not tick().run_requests
            failed = launch(retry)
        assert keys == [f"model-card-v{VERSION}"] + [
            f"model-card-v{VERSION}-retry-{n}" for n in range(1, card_retries.CARD_RETRIES + 1)
        ]

        reported = tick()
        assert not reported.run_requests
        assert f"v{VERSION}'s model card failed 4 times, last in run {failed}: " in (
            reported.skip_message
        )
        assert "not retried again" in reported.skip_message
        # Reported once, then left alone: the retries are bounded.
        assert tick().skip_message == "no new evaluation since the last card"
        assert len(instance.get_run_records(dg.RunsFilter(job_name=card_job.name))) == 4


def test_a_card_written_after_a_failure_ends_the_retries(
    spec: ModelSpec, lifecycle_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card written another way (a run from the UI) between a failure and its retry: the
    sensor stops watching the version and requests nothing more."""
    defs = build_definitions([spec])
    sensor = defs.get_sensor_def(f"{spec.name}_model_card_sensor")
    card_job = defs.resolve_job_def(model_card_job_name(spec))
    monkeypatch.setattr(card_retries, "CARD_RETRY_BACKOFF_SECONDS", 0.0)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor="0", definitions=defs)
        _evaluated(instance, spec, VERSION, {})
        started = sensor.evaluate_tick(context)
        (request,) = started.run_requests
        card_job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                names.key(spec.name, names.MODEL_CARD), metadata={"model_version": VERSION}
            )
        )
        context = dg.build_sensor_context(
            instance=instance, cursor=started.cursor, definitions=defs
        )
        done = sensor.evaluate_tick(context)
        assert not done.run_requests
        assert done.skip_message == "no new evaluation since the last card"
