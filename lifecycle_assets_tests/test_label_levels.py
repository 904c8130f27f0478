"""Label files of a classifier whose target is spelled `Yes`/`No` (the spec's `positive_label`).

They are mapped to 0/1 by the function training uses, and a value that is neither level is
quarantined with its value named, never silently taken as a 0.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from lifecycle_assets.data import ground_truth
from lifecycle_assets.spec import ModelSpec

DAY = dt.date(2026, 3, 5)
AT = "2026-03-05T10:00:00+00:00"


def _yes_no(spec: ModelSpec, negative: str | None = "No") -> ModelSpec:
    return ModelSpec.model_validate(
        {**spec.model_dump(), "positive_label": "Yes", "negative_label": negative}
    )


def test_spelled_labels_map_to_0_1_and_a_third_value_is_quarantined(
    tmp_path: Path, spec: ModelSpec
) -> None:
    spelled = _yes_no(spec)
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "a.csv").write_text(
        f"prediction_id,label,labelled_at\na,Yes,{AT}\nb,No,{AT}\nc,Maybe,{AT}\nd,1,{AT}\n"
    )
    pl.DataFrame(
        {"prediction_id": ["e", "f"], "label": ["No", "Yes"], "labelled_at": [AT, AT]}
    ).write_parquet(folder / "b.parquet")
    quarantine = tmp_path / "quarantine"

    found = ground_truth.arrivals(folder, DAY, spelled, quarantine)

    got = dict(zip(found.labels["prediction_id"], found.labels["label"], strict=True))
    assert got == {"a": 1.0, "b": 0.0, "e": 0.0, "f": 1.0}
    reasons = [p.reason for p in found.problems]
    assert [p.where for p in found.problems] == ["line 4", "line 5"]
    assert reasons[0].startswith("column 'label' holds 'Maybe', neither level of the spec")
    assert "'Yes' is positive, 'No' negative" in reasons[0]
    assert reasons[1].startswith("column 'label' holds '1', neither level")
    report = json.loads(next(quarantine.glob("a-*.report.json")).read_text())
    assert [p["where"] for p in report["problems"]] == ["line 4", "line 5"]
    # Without the spec (a task name only) the same file is 0/1-only, as before.
    plain = ground_truth.arrivals(folder, DAY, spec.task)
    assert sorted(plain.labels["prediction_id"]) == ["d"]


def test_an_unset_negative_resolves_as_in_training(tmp_path: Path, spec: ModelSpec) -> None:
    path = tmp_path / "labels.csv"
    rows = ["a,Yes", "b,No", "c,No", "d,Maybe"]
    path.write_text("prediction_id,label,labelled_at\n" + "".join(f"{r},{AT}\n" for r in rows))
    check = ground_truth.check_label_file(path, _yes_no(spec, negative=None))
    assert check.labels["label"].to_list() == [1.0, 0.0, 0.0]
    assert [p.where for p in check.problems] == ["line 5"]
    assert "'Maybe'" in check.problems[0].reason


def test_simulated_labels_keep_the_datas_spelling(tmp_path: Path, spec: ModelSpec) -> None:
    predicted = dt.datetime(2026, 3, 4, 9, tzinfo=dt.UTC)
    predictions = pl.DataFrame(
        {"prediction_id": ["p1", "p2"], "record_id": ["r1", "r2"], "predicted_at": [predicted] * 2}
    )
    truth = pl.DataFrame({"id": ["r1", "r2"], "default": ["Yes", "No"]})
    files = ground_truth.write_delayed_labels(
        predictions,
        truth,
        record_id_column="id",
        label_column="default",
        delay=dt.timedelta(days=1),
        out_dir=tmp_path,
    )
    labels = ground_truth.read_label_file(files[0], _yes_no(spec))
    assert dict(zip(labels["prediction_id"], labels["label"], strict=True)) == {
        "p1": 1.0,
        "p2": 0.0,
    }
