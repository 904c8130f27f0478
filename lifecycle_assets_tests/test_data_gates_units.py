"""Data the way users bring it, judged without a Dagster run: target labels, exact categorical
levels, booleans, preflight, spec drafting, fingerprints and gates that always give a verdict."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from lifecycle_assets.cli import main
from lifecycle_assets.config import GateThresholds, ServingLimits
from lifecycle_assets.data.draft import draft_spec
from lifecycle_assets.data.fingerprint import fingerprint
from lifecycle_assets.data.preflight import preflight
from lifecycle_assets.data.sources import read_day
from lifecycle_assets.lifecycle_run import partitions_in_window
from lifecycle_assets.ml import gates
from lifecycle_assets.ml.evaluation import evaluate
from lifecycle_assets.ml.features import UNKNOWN_CATEGORY, compute_features, feature_table
from lifecycle_assets.ml.leakage import single_feature_aucs, unknown_level_problems
from lifecycle_assets.ml.schemas import validate_raw
from lifecycle_assets.ml.training import snapshot_split
from lifecycle_assets.serving.requests import RequestValidator
from lifecycle_assets.spec import ModelSpec, SpecError, load_spec

README = Path(__file__).resolve().parents[1] / "README.md"

SPEC = """\
name: members
source:
  uri: {csv}
target: left
{label}timestamp: event_time
sensitive_attribute: gender
start_date: 2026-03-02
end_date: {end}
features:
  - {{name: tenure, type: numeric, min: 0}}
  - {{name: spend, type: numeric, nullable: true}}
  - {{name: plan, type: categorical, categories: [Basic, Plus, Pro], max_length: 8}}
  - {{name: is_member, type: categorical, categories: ["False", "True"]}}
  - {{name: gender, type: categorical, categories: [Female, Male], model_input: false}}
estimator: {{kind: hist_gradient_boosting, params: {{max_iter: 60}}}}
training: {{window_days: {window}}}
"""


def weekdays(start: dt.date, count: int) -> list[dt.date]:
    """`count` weekdays from `start`: a calendar with weekend gaps."""
    days, day = [], start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def members_frame(
    days: int = 6,
    rows_per_day: int = 250,
    seed: int = 5,
    positive_rate_shift: float = 0.0,
    start: dt.date = dt.date(2026, 3, 2),
) -> pl.DataFrame:
    """Members who leave or not (`Yes`/`No`), with capitalized levels and a boolean column."""
    rng = np.random.default_rng(seed)
    dates = weekdays(start, days)
    n = days * rows_per_day
    tenure = rng.integers(0, 60, n).astype(float)
    spend = rng.normal(50, 20, n).round(2)
    plan = rng.choice(["Basic", "Plus", "Pro"], n)
    member = rng.random(n) < 0.5
    gender = rng.choice(["Female", "Male"], n)
    logit = (
        0.3
        + positive_rate_shift
        - 0.06 * (tenure - 30)
        + 1.2 * (plan == "Basic")
        - 0.9 * (plan == "Pro")
        - 1.0 * member
    )
    left = rng.random(n) < 1 / (1 + np.exp(-logit))
    times = [
        dt.datetime.combine(dates[i // rows_per_day], dt.time())
        + dt.timedelta(seconds=int((i % rows_per_day) * 86400 / rows_per_day))
        for i in range(n)
    ]
    return pl.DataFrame(
        {
            "event_time": times,
            "tenure": tenure,
            "spend": spend,
            "plan": plan,
            "is_member": member,
            "gender": gender,
            "left": np.where(left, "Yes", "No"),
        }
    )


def write_spec(
    tmp_path: Path,
    csv: Path,
    *,
    label: str = "positive_label: 'Yes'\n",
    end: str = "2026-03-09",
    window: int = 12,
) -> ModelSpec:
    path = tmp_path / "members.yaml"
    path.write_text(SPEC.format(csv=csv, label=label, end=end, window=window))
    return load_spec(path)


def write_csv(frame: pl.DataFrame, path: Path) -> Path:
    """As pandas writes it: booleans as `True`/`False` (polars would write `true`)."""
    frame.with_columns(
        pl.col(pl.Boolean).replace_strict({True: "True", False: "False"}, return_dtype=pl.String)
    ).write_csv(path)
    return path


@pytest.fixture
def members(tmp_path: Path) -> tuple[ModelSpec, pl.DataFrame, Path]:
    frame = members_frame()
    csv = write_csv(frame, tmp_path / "members.csv")
    return write_spec(tmp_path, csv), frame, csv


def test_yes_no_target_maps_by_positive_label_and_a_third_class_fails(members) -> None:
    spec, frame, csv = members
    text = pl.read_csv(csv, infer_schema=False)
    typed, report = validate_raw(text, spec)
    assert report.passed, report.summary()
    assert typed["left"].to_list()[:20] == [int(v == "Yes") for v in frame["left"][:20]]

    third = text.with_columns(
        pl.when(pl.int_range(pl.len()) % 50 == 0)
        .then(pl.lit("Maybe"))
        .otherwise(pl.col("left"))
        .alias("left")
    )
    _, report = validate_raw(third, spec)
    assert not report.passed and "Maybe" in json.dumps(report.to_dict())
    assert report.failed_columns == ["left"]


def test_a_label_target_without_positive_label_is_a_clear_preflight_error(
    tmp_path: Path,
) -> None:
    csv = tmp_path / "members.csv"
    write_csv(members_frame(), csv)
    report = preflight(write_spec(tmp_path, csv, label=""))
    assert len(report.errors) == 1
    error = report.errors[0]
    assert "'No'" in error and "'Yes'" in error and "positive_label" in error

    three = members_frame().with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0)
        .then(pl.lit("Maybe"))
        .otherwise(pl.col("left"))
        .alias("left")
    )
    write_csv(three, csv)
    error = preflight(write_spec(tmp_path, csv, label="")).errors[0]
    assert "Maybe" in error and "binary" in error


def test_capitalized_levels_and_booleans_are_the_same_on_every_path(members) -> None:
    spec, frame, csv = members
    # Pipeline path: CSV text, typed by validation, then the shared feature code.
    typed, report = validate_raw(pl.read_csv(csv, infer_schema=False), spec)
    assert report.passed, report.summary()
    pipeline = feature_table(typed, spec)
    assert unknown_level_problems(pipeline, spec) == []
    for name in ("plan", "is_member"):
        assert UNKNOWN_CATEGORY not in pipeline[name].to_list()
    assert set(pipeline["is_member"].unique()) == {"True", "False"}
    # Parquet booleans give the same levels as CSV text.
    parquet_typed, _ = validate_raw(frame, spec)
    assert parquet_typed["is_member"].to_list() == typed["is_member"].to_list()
    # Service path: JSON records with true/false.
    records = frame.head(50).select(spec.input_columns).to_dicts()
    assert isinstance(records[0]["is_member"], bool)
    validator = RequestValidator(spec, ServingLimits().max_batch_size)
    served = compute_features(
        validator.parse(json.dumps({"records": records}).encode()).frame, spec
    )
    assert served.equals(pipeline.head(50).select(spec.feature_names))
    # Lower-cased levels are other values: unknown, and a blocking problem when most are.
    lowered = pipeline.with_columns(pl.lit(UNKNOWN_CATEGORY).alias("plan"))
    assert [p.split(":")[0] for p in unknown_level_problems(lowered, spec)] == ["plan"]


def test_string_length_check_comes_from_the_spec(members) -> None:
    spec, frame, _ = members
    longer = frame.with_columns(pl.lit("Platinum+").alias("plan"))
    _, report = validate_raw(longer, spec)
    assert {f["check"] for f in report.failures} >= {"str_length(None, 8)"}


def test_preflight_names_the_options_for_small_skewed_data(tmp_path: Path) -> None:
    """1,300 rows with 78% positives: the defaults do not fit, and the report says which
    options make them fit."""
    csv = tmp_path / "members.csv"
    write_csv(members_frame(days=20, rows_per_day=65, positive_rate_shift=1.8), csv)
    report = preflight(write_spec(tmp_path, csv, end="2026-03-27", window=30))
    assert not report.errors
    text = "\n".join(report.warnings)
    rate = float(re.search(r"positive rate (\d\.\d+)", text).group(1))
    assert 0.7 < rate < 0.85
    assert "gates.max_positive_rate" in text
    assert "gates.min_rows_per_split" in text and "training.test_fraction" in text
    assert "gates.min_training_rows" not in text  # 1,300 rows is enough


def test_preflight_finds_misspelled_columns_nulls_and_bad_numbers(tmp_path: Path) -> None:
    csv = tmp_path / "members.csv"
    frame = members_frame().rename({"tenure": "Tenure"})
    frame = frame.with_columns(
        pl.col("spend").cast(pl.String),
        pl.when(pl.int_range(pl.len()) % 20 == 0).then(None).otherwise("gender").alias("gender"),
    )
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 7 == 0)
        .then(pl.lit("n/a"))
        .otherwise(pl.col("spend"))
        .alias("spend")
    )
    write_csv(frame, csv)
    report = preflight(write_spec(tmp_path, csv))
    text = "\n".join(report.warnings)
    assert "'tenure' is missing (closest: 'Tenure')" in text
    assert "'spend' is numeric in the spec but" in text and "n/a" in text
    assert "'gender' is 5.0% null" in text


@pytest.mark.parametrize("content", ["", "event_time,tenure,spend,plan,is_member,gender,left\n"])
def test_empty_and_header_only_sources_are_errors(tmp_path: Path, content: str) -> None:
    csv = tmp_path / "members.csv"
    csv.write_text(content)
    errors = preflight(write_spec(tmp_path, csv)).errors
    assert len(errors) == 1 and ("empty" in errors[0] or "no rows" in errors[0])


def test_draft_spec_is_a_loadable_starting_point(tmp_path: Path) -> None:
    csv = tmp_path / "members.csv"
    write_csv(members_frame(), csv)
    text = draft_spec(csv, target="left")
    path = tmp_path / "draft.yaml"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.timestamp == "event_time" and spec.positive_label == "Yes"
    assert spec.feature("plan").categories == ("Basic", "Plus", "Pro")
    assert spec.feature("is_member").categories == ("false", "true") or spec.feature(
        "is_member"
    ).categories == ("False", "True")
    assert not preflight(spec).errors


def test_a_bad_spec_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsource: {uri: a.csv}\ntarget: y\ntimestamp: t\n")
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "sensitive_attribute: Field required" in message


def test_fingerprint_changes_with_the_file_and_with_data_fields_only(members, tmp_path) -> None:
    spec, frame, csv = members
    before = fingerprint(spec)
    cheaper = spec.model_copy(update={"estimator": spec.estimator.model_copy(update={})})
    assert fingerprint(cheaper) == before
    no_levels = spec.model_copy(
        update={
            "features": tuple(
                f.model_copy(update={"categories": None}) if f.name == "plan" else f
                for f in spec.features
            )
        }
    )
    assert fingerprint(no_levels).changes_from(before.to_dict()) == ["spec changed"]
    write_csv(frame.head(100), csv)
    assert fingerprint(spec).changes_from(before.to_dict()) == ["source file changed"]


def test_fairness_gives_insufficient_data_instead_of_crashing() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    proba = np.clip(y * 0.6 + rng.random(400) * 0.4, 0, 1)
    groups = np.array(["A"] * 384 + ["B"] * 16)
    report = evaluate(y, proba, groups, min_slice_size=30)
    gate = gates.fairness_gap_within_limit(report, GateThresholds())
    assert not gate.passed and gate.actual is None
    assert re.search(
        r"insufficient data: slice B has 16 rows, \d+ positives, minimum 30", gate.description
    )
    assert "min_slice_size" in gate.description
    smaller = gates.fairness_gap_within_limit(
        evaluate(y, proba, groups, min_slice_size=10), GateThresholds(min_slice_size=10)
    )
    assert smaller.actual is not None


def test_a_model_predicting_no_positives_is_refused() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    proba = 0.1 + 0.3 * y + rng.random(400) * 0.05  # ranks perfectly, never reaches 0.5
    report = evaluate(y, proba, np.array(["A", "B"] * 200))
    assert report.primary_metric > 0.99
    gate = gates.performance_meets_minimum(report, GateThresholds())
    assert not gate.passed and "predicts no positive" in gate.description


def test_a_feature_that_alone_separates_the_classes_is_flagged(members) -> None:
    spec, frame, _ = members
    typed, _ = validate_raw(frame, spec)
    table = feature_table(typed, spec)
    leaky = table.with_columns((pl.col("left") * 10.0 + pl.col("tenure") * 0.01).alias("spend"))
    scores = single_feature_aucs(leaky, spec)
    assert scores["spend"] >= 0.95 and scores["tenure"] < 0.95


def test_quarantined_share_gate() -> None:
    quarantine = {"window_days": 10, "quarantined_days": ["2026-03-09"]}
    assert not gates.quarantined_share_within_limit(quarantine, GateThresholds()).passed
    allowed = gates.quarantined_share_within_limit(
        quarantine, GateThresholds(max_quarantined_share=0.1)
    )
    assert allowed.passed and "2026-03-09" in allowed.description
    assert gates.quarantined_share_within_limit(
        {"window_days": 10, "quarantined_days": []}, GateThresholds()
    ).passed


def test_readme_lists_every_gate_key_with_its_default() -> None:
    """The README table is `gate_keys_markdown()` verbatim: regenerate it when a key changes."""
    assert gates.gate_keys_markdown() in README.read_text()


def test_window_ends_on_the_data_s_own_last_day(tmp_path: Path) -> None:
    csv = write_csv(members_frame(days=6), tmp_path / "members.csv")
    spec = write_spec(tmp_path, csv, window=5)
    open_ended = spec.model_copy(update={"end_date": None})
    # Weekdays from Monday 2026-03-02: the data ends on Monday 2026-03-09, not today.
    assert partitions_in_window(open_ended) == [
        "2026-03-05",
        "2026-03-06",
        "2026-03-07",
        "2026-03-08",
        "2026-03-09",
    ]


def test_cli_preflight_draft_spec_and_a_bad_spec(tmp_path: Path) -> None:
    csv = write_csv(members_frame(), tmp_path / "members.csv")
    runner = CliRunner()
    drafted = runner.invoke(main, ["draft-spec", str(csv), "--target", "left"])
    assert drafted.exit_code == 0 and "positive_label: 'Yes'" not in drafted.output
    assert 'positive_label: "Yes"' in drafted.output, drafted.output
    spec_file = tmp_path / "draft.yaml"
    spec_file.write_text(drafted.output)
    checked = runner.invoke(main, ["preflight", "--spec", str(spec_file)])
    assert checked.exit_code == 0, checked.output
    assert "positive rate" in checked.output and "rows per split" in checked.output

    write_spec(tmp_path, csv, label="")
    refused = runner.invoke(main, ["preflight", "--spec", str(tmp_path / "members.yaml")])
    assert refused.exit_code == 1 and "set `positive_label: Yes`" in refused.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(drafted.output.replace("target: left", "target: [left"))
    for command in ("run", "preflight"):
        result = runner.invoke(main, [command, "--spec", str(bad)])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and str(bad) in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_snapshot_splits_at_random_stratified_and_drafts_without_timestamp(
    tmp_path: Path,
) -> None:
    csv = write_csv(members_frame().drop("event_time"), tmp_path / "members.csv")
    text = draft_spec(csv, target="left")
    assert "timestamp:" not in text and "snapshot" in text
    path = tmp_path / "snapshot.yaml"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.is_snapshot
    report = preflight(spec)
    assert not report.errors, report.errors
    assert any("split at random" in f.text for f in report.findings)
    typed, validation = validate_raw(pl.read_csv(csv, infer_schema=False), spec)
    assert not validation.passed  # no event time column in the raw file ...
    frame, _ = read_day(spec, spec.start_date)
    typed, validation = validate_raw(frame, spec)
    assert validation.passed, validation.summary()  # ... the reader adds the snapshot's day
    table = snapshot_split(feature_table(typed, spec), spec)
    again = snapshot_split(feature_table(typed, spec), spec)
    assert table["split"].to_list() == again["split"].to_list()
    shares = table.group_by("split").agg(pl.col("left").mean(), pl.len()).sort("split")
    assert shares["left"].max() - shares["left"].min() < 0.01
    assert dict(shares.select("split", "len").rows()) == {
        "test": 300,
        "train": 975,
        "validation": 225,
    }
