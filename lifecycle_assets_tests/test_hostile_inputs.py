"""What a careless or hostile user writes: spec files that validate but could only fail later (or
silently), splits that leave no training day, estimator params scikit-learn refuses, output paths
that cannot be written. Each ends in one line naming the field, before anything is ingested."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from dagster._utils.error import SerializableErrorInfo

from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.data.preflight import preflight
from lifecycle_assets.run_results import root_message
from lifecycle_assets.spec import DEFAULT_SPEC_PATH, ModelSpec, SpecError, load_spec
from lifecycle_assets_tests.test_data_gates_units import members_frame, write_csv, write_spec


def _edited(tmp_path: Path, edit, base: Path = DEFAULT_SPEC_PATH) -> Path:
    raw = yaml.safe_load(base.read_text())
    edit(raw)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _feature(raw: dict, name: str) -> dict:
    return next(f for f in raw["features"] if f["name"] == name)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        # Validation would accept every level and the model would see only `__unknown__`.
        (lambda raw: _feature(raw, "home_ownership").update(categories=[]), "categories is empty"),
        (lambda raw: _feature(raw, "age").update(min=90, max=18), "min 90 is above max 18"),
        (lambda raw: _feature(raw, "age").update(min=float("nan")), "not NaN"),
        # A NaN floor passes every `value < floor` test: the sanity gate would never refuse.
        (lambda raw: raw.update(gates={"min_training_rows": float("nan")}), "NaN"),
        (lambda raw: raw.update(id_column=raw["target"]), "id_column"),
        (lambda raw: raw.update(id_column="age"), "id_column"),
        # The window's first day would be before year 1 (OverflowError in the ingest).
        (lambda raw: raw["training"].update(window_days=10**9), "training.window_days"),
    ],
)
def test_a_spec_that_could_only_fail_later_is_refused_on_load(
    tmp_path: Path, edit, named: str
) -> None:
    path = _edited(tmp_path, edit)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert named in message and str(path) in message and "\n" not in message


def test_a_stored_spec_of_a_registered_version_still_loads(tmp_path: Path) -> None:
    """The checks above are on spec files only: a version registered with such a spec (its
    copy in the registry) must still load, or its champion could no longer be evaluated
    against nor served."""
    path = _edited(tmp_path, lambda raw: _feature(raw, "home_ownership").update(categories=[]))
    ModelSpec.model_validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("content", [b"\xff\xfe\x00name: x", None])
def test_an_unreadable_spec_file_is_one_line(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "spec.yaml"
    if content is None:
        path.mkdir()  # LIFECYCLE_SPECS naming a folder
    else:
        path.write_bytes(content)
    with pytest.raises(SpecError, match=str(path)):
        load_spec(path)


def test_preflight_names_a_split_that_leaves_no_training_day(tmp_path: Path) -> None:
    csv = write_csv(members_frame(days=6), tmp_path / "members.csv")
    spec = write_spec(tmp_path, csv)
    greedy = spec.model_copy(
        update={
            "training": spec.training.model_copy(
                update={"test_fraction": 0.49, "validation_fraction": 0.49}
            )
        }
    )
    report = preflight(greedy)  # raised ValueError (a traceback in `lifecycle run`) before
    assert any("leave no day for training" in e and "test_fraction" in e for e in report.errors)


def test_preflight_refuses_estimator_params_scikit_learn_refuses(tmp_path: Path) -> None:
    runner = CliRunner()
    for params, named in (
        ({"max_iterr": 5}, "max_iterr"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"max_iter": -5}, "max_iter"),
    ):
        path = _edited(tmp_path, lambda raw, p=params: raw["estimator"]["params"].update(p))
        result = runner.invoke(main, ["preflight", "--spec", str(path)])
        assert result.exit_code == 1, result.output
        assert f"estimator.params of 'hist_gradient_boosting': The '{named}'" in result.output or (
            named in result.output and "unexpected keyword" in result.output
        ), result.output


def test_run_with_a_cron_dagster_refuses_is_one_line(
    lifecycle_env: Settings, tmp_path: Path
) -> None:
    path = _edited(tmp_path, lambda raw: raw.update(schedules={"retrain_cron": "every monday"}))
    result = CliRunner().invoke(main, ["run", "--spec", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "every monday" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_lineage_to_a_path_that_cannot_be_written_is_one_line(
    lifecycle_env: Settings, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "lineage.dot"
    result = CliRunner().invoke(main, ["lineage", "credit_default", "1", "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"cannot write {out}" in result.output, result.output


def test_a_failed_step_s_cause_is_the_innermost_that_says_something() -> None:
    """scikit-learn's joblib workers wrap the real error around a `_RemoteTraceback: ` whose
    first line is empty: the console said `churn__trained_model: ;` for an all-null column."""
    remote = SerializableErrorInfo(
        'joblib.externals.loky.process_executor._RemoteTraceback: \n"""\nTraceback ...', [], "X"
    )
    value = SerializableErrorInfo(
        "ValueError: window shape cannot be larger than input array shape\n", [], "ValueError",
        remote,
    )  # fmt: skip
    outer = SerializableErrorInfo(
        "dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred\n",
        [],
        "DagsterExecutionStepExecutionError",
        value,
    )
    assert root_message(outer) == "ValueError: window shape cannot be larger than input array shape"


@pytest.mark.e2e
def test_a_swapped_file_with_one_bad_day_quarantines_it_and_ingests_the_rest(
    lifecycle_env: Settings, tmp_path: Path
) -> None:
    """The file is replaced between two runs by one whose first day has a bad value: that day
    is quarantined and counted, the others are read again. Their features from the first run
    (of the old file) held the re-run of the held-back features off, and the run ended in
    `ingest of <day> failed` (a traceback on the console) instead."""
    import polars as pl

    from lifecycle_assets.cli.lifecycle import run_lifecycle
    from lifecycle_assets.data.lake import Lake

    frame = members_frame()
    csv = write_csv(frame, tmp_path / "members.csv")
    spec_path = tmp_path / "members.yaml"
    write_spec(tmp_path, csv)
    run_lifecycle(str(spec_path), as_json=True)

    first = frame["event_time"].min().date()
    bad = frame.with_columns(
        pl.when((pl.col("event_time").dt.date() == first) & (pl.int_range(pl.len()) % 9 == 0))
        .then(pl.lit("n/a"))
        .otherwise(pl.col("tenure").cast(pl.String))
        .alias("tenure")
    )
    write_csv(bad, csv)
    [summary] = run_lifecycle(str(spec_path), as_json=True)
    assert list(summary.ingest.quarantined) == [first.isoformat()]
    assert "n/a" in summary.ingest.quarantined[first.isoformat()]
    assert summary.exit_code == 3, summary.failure
    lake = Lake(lifecycle_env.lake_dir, lifecycle_env.quarantine_dir, "members")
    others = [day for day in lake.batch_days() if day != first.isoformat()]
    assert len(others) == 5
    for day in others:
        assert lake.feature_entry(day)["raw_sha256"] == lake.batch(day).sha256


def test_preflight_refuses_a_feature_that_is_null_in_every_row(tmp_path: Path) -> None:
    """`spend` is nullable; all null, the ingest went through and training failed later."""
    import polars as pl

    frame = members_frame().with_columns(pl.lit(None, pl.Float64).alias("spend"))
    spec = write_spec(tmp_path, write_csv(frame, tmp_path / "members.csv"))
    assert any("'spend' is null in every row" in error for error in preflight(spec).errors)


def test_preflight_refuses_a_utf16_file_and_a_header_naming_a_column_twice(
    tmp_path: Path,
) -> None:
    csv = write_csv(members_frame(), tmp_path / "members.csv")
    text = csv.read_text()
    spec = write_spec(tmp_path, csv)
    csv.write_bytes(text.encode("utf-16"))
    assert preflight(spec).errors == [
        "the source is not UTF-8 text (NUL bytes in the header: UTF-16?)"
    ]  # was one "column ... is missing (closest: '\\x00e\\x00v...')" per column
    header, *rows = text.splitlines()
    csv.write_text("\n".join([header + ",tenure", *(row + ",1" for row in rows)]) + "\n")
    assert "column 'tenure' appears more than once in the header" in preflight(spec).errors


@pytest.mark.parametrize("command", [["status"], ["monitor"], ["simulate-traffic"]])
def test_a_missing_project_spec_is_one_line_on_every_command(
    lifecycle_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("LIFECYCLE_SPECS", str(tmp_path / "gone.yaml"))
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1 and not isinstance(result.exception, SpecError), result.output
    assert result.output.strip() == f"Error: spec file not found: {tmp_path / 'gone.yaml'}"


def test_draft_spec_of_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    text = write_csv(members_frame(), tmp_path / "members.csv").read_text()
    for encoding, accent in (("latin-1", "é"), ("utf-16", "é"), ("utf-16", "e")):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(text.replace("Basic", f"Bas{accent}").encode(encoding))
        result = CliRunner().invoke(main, ["draft-spec", str(path)])
        assert result.exit_code == 1 and "utf-8" in result.output.lower(), result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_preflight_names_the_line_with_more_fields_than_the_header(tmp_path: Path) -> None:
    csv = write_csv(members_frame(), tmp_path / "members.csv")
    lines = csv.read_text().splitlines()
    lines[41] += ",stray,fields"
    csv.write_text("\n".join(lines) + "\n")
    [error] = preflight(write_spec(tmp_path, csv)).errors
    assert error.endswith(f"({csv} line 42 has more fields than its header)"), error


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"rows_per_day": "lots"}, "rows_per_day must be a number"),  # a traceback in `run`
        ({"rows_per_day": 0}, "rows_per_day must be at least 1"),
        ({"warp": 3}, "unknown option 'warp'"),  # a failed ingest run
    ],
)
def test_preflight_checks_the_simulator_options(tmp_path: Path, options: dict, named: str) -> None:
    path = _edited(tmp_path, lambda raw: raw["source"]["simulator"].update(options))
    result = CliRunner().invoke(main, ["preflight", "--spec", str(path)])
    assert result.exit_code == 1 and f"source.simulator: {named}" in result.output, result.output


def test_simulate_traffic_mistakes_are_one_line(lifecycle_env: Settings, tmp_path: Path) -> None:
    """No service listening, no day to send, a spec the simulator has no columns for: each was
    a traceback (httpx.ConnectError, polars' empty concat, ColumnNotFoundError)."""
    csv = write_csv(members_frame(), tmp_path / "members.csv")
    write_spec(tmp_path, csv)
    nobody = "http://127.0.0.1:9"  # discard: nothing answers
    for args, named in (
        ([], f"no service answered at {nobody}"),
        (["--days", "0"], "0 is not in the range x>=1"),
        # Refused before any request: a label due before its prediction cannot exist.
        (["--label-delay-days", "-1"], "-1.0 is not in the range x>=0"),
        (["--spec", str(tmp_path / "members.yaml")], "have no column ['tenure'"),
    ):
        result = CliRunner().invoke(main, ["simulate-traffic", "--service-url", nobody, *args])
        assert result.exit_code in (1, 2) and named in result.output, result.output
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        ), result.exception


def test_simulate_refuses_nothing_to_write_and_an_unwritable_folder(tmp_path: Path) -> None:
    """--days 0 wrote nothing and exited 0; --rows-per-day 0 and a folder under a file were
    tracebacks."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args, named in (
        (["--days", "0"], "0 is not in the range x>=1"),
        (["--rows-per-day", "0"], "0 is not in the range x>=1"),
        (["--out", str(blocker / "landing")], f"cannot write to {blocker / 'landing'}"),
    ):
        result = CliRunner().invoke(main, ["simulate", "--days", "1", *args])
        assert result.exit_code in (1, 2) and named in result.output, result.output
        assert isinstance(result.exception, SystemExit), result.exception


def test_trace_names_a_logged_line_holding_the_id_that_is_not_a_valid_row(
    lifecycle_env: Settings,
) -> None:
    """A log line with the id but no valid row (cut short, edited by hand): `trace` said "no
    prediction with this id", as if it had never been logged."""
    import datetime as dt
    import json

    from lifecycle_assets.serving.prediction_ids import new_prediction_id

    prediction_id = new_prediction_id()
    day = dt.datetime.now(dt.UTC).date().isoformat()
    folder = Path(str(lifecycle_env.prediction_log_dir)) / "credit_default" / day
    folder.mkdir(parents=True)
    segment = folder / "host-1-1.jsonl"
    segment.write_text('{"cut short\n' + json.dumps({"prediction_id": prediction_id}) + "\n")
    result = CliRunner().invoke(main, ["trace", prediction_id, "--json"])
    assert result.exit_code == 1, result.output
    assert "1 logged line(s) holding it are not valid rows" in result.output, result.output
    assert f"{segment} line 2: " in result.output, result.output
