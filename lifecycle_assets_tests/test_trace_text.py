"""The readable trace's own lines (`lifecycle trace`): what a reader sees for a link's facts."""

from __future__ import annotations

from lifecycle_assets import config
from lifecycle_assets.cli.provenance import _facts
from lifecycle_assets.provenance.links import MODEL_VERSION, PREDICTION, Link


def _prediction(record_id: str | None) -> Link:
    details = {
        "predicted_at": "2026-12-01T22:09:41+00:00",
        "variant": "champion",
        "model_name": "credit_default",
        "model_version": "1",
        "record_id": record_id,
        "outputs": {"prediction": 0},
        "inputs": {"age": 35},
    }
    return Link(PREDICTION, "p", "ok", details=details)


def test_a_prediction_sent_without_record_id_says_so_rather_than_none() -> None:
    """The README's curl sends no id: the trace printed `record None`."""
    assert _facts(_prediction(None))[0].endswith("; no record id")
    assert _facts(_prediction("A-1"))[0].endswith("; record A-1")


def test_a_retired_version_says_so_in_the_trace() -> None:
    """A prediction of a version retired since (README: "stays traceable") read only
    `aliases now: none`, as if it could still be promoted."""
    tags = {config.TAG_RETIRED: "true", config.TAG_RETIRED_AT: "2026-12-01T22:11:40+00:00"}
    link = Link(MODEL_VERSION, "credit_default/1", "ok", details={"tags": tags, "aliases": []})
    assert _facts(link)[0].endswith("aliases now: none; retired 2026-12-01T22:11:40+00:00")
    live = Link(MODEL_VERSION, "credit_default/2", "ok", details={"tags": {}, "aliases": []})
    assert "retired" not in _facts(live)[0]
