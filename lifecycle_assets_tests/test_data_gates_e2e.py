"""Bad data never moves `champion`: a champion exists, then bad files arrive, with and without
`--refresh`, on a real Dagster instance and MLflow registry. Runs `lifecycle run` in-process (the
same function the command calls) for the matrix, and the real command once for its console."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import polars as pl
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from lifecycle_assets.cli.lifecycle import run_lifecycle
from lifecycle_assets.config import Settings
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.lifecycle_run import (
    REFUSED,
    UNCHANGED,
    current_champion,
    days_to_ingest,
    partitions_in_window,
)
from lifecycle_assets.ml import gates
from lifecycle_assets_tests.test_data_gates_units import members_frame, write_csv, write_spec

pytestmark = pytest.mark.e2e

LIFECYCLE = str(Path(sys.executable).with_name("lifecycle"))
NTH = pl.int_range(pl.len())


def _bad_files(good: pl.DataFrame) -> dict[str, tuple[pl.DataFrame | str, str]]:
    """Each bad file and the column or value its message must name."""
    newest = pl.col("event_time").dt.date() == good["event_time"].max().date()
    return {
        "renamed column": (good.rename({"tenure": "tenure_months"}), "tenure"),
        "third target class": (
            good.with_columns(
                pl.when(NTH % 10 == 0).then(pl.lit("Maybe")).otherwise("left").alias("left")
            ),
            "Maybe",
        ),
        "strings in a numeric column": (
            good.with_columns(
                pl.when(NTH % 15 == 0)
                .then(pl.lit("n/a"))
                .otherwise(pl.col("spend").cast(pl.String))
                .alias("spend")
            ),
            "n/a",
        ),
        "5% nulls": (
            good.with_columns(
                pl.when(NTH % 20 == 0).then(None).otherwise("tenure").alias("tenure")
            ),
            "tenure",
        ),
        # Only the newest day: the rest of the window trains, the quarantine gate refuses.
        "missing labels in the newest batch": (
            good.with_columns(
                pl.when(newest & (NTH % 50 == 0)).then(None).otherwise("left").alias("left")
            ),
            "left",
        ),
        "header only": ("event_time,tenure,spend,plan,is_member,gender,left\n", "no rows"),
        "empty file": ("", "empty"),
    }


def _run(spec_path: Path, refresh: bool) -> tuple[int, str, object | None]:
    """(exit code, what the console would name, summary) of one in-process `lifecycle run`."""
    import time

    t0 = time.time()  # noqa
    try:
        [summary] = run_lifecycle(str(spec_path), refresh=refresh, as_json=True)
    except click.ClickException as error:
        return error.exit_code, error.format_message(), None
    named = " ".join([summary.failure or "", *summary.ingest.quarantined.values()])
    return summary.exit_code, named, summary


def _feature_sources(lake: Lake) -> set[str]:
    return {lake.feature_entry(day)["raw_sha256"] for day in lake.feature_days()}


def _plain_sklearn_auc(good: pl.DataFrame, split_days: dict[str, list[str]]) -> float:
    """The same split fit by a plain scikit-learn pipeline on the raw CSV columns."""
    frame = good.with_columns(
        pl.col("event_time").dt.date().cast(pl.String).alias("day"),
        pl.col("is_member").replace_strict({True: "True", False: "False"}),
        (pl.col("left") == "Yes").cast(pl.Int64).alias("y"),
    )
    columns = ["tenure", "spend", "plan", "is_member"]
    model = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        ("numeric", "passthrough", ["tenure", "spend"]),
                        ("categorical", OrdinalEncoder(), ["plan", "is_member"]),
                    ]
                ),
            ),
            (
                "model",
                HistGradientBoostingClassifier(
                    max_iter=60, random_state=7, categorical_features=[2, 3]
                ),
            ),
        ]
    )
    train = frame.filter(pl.col("day").is_in(split_days["train"]))
    test = frame.filter(pl.col("day").is_in(split_days["test"]))
    model.fit(train.select(columns).to_pandas(), train["y"].to_numpy())
    return float(
        roc_auc_score(test["y"], model.predict_proba(test.select(columns).to_pandas())[:, 1])
    )


def test_bad_files_never_move_champion(
    lifecycle_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = members_frame(days=4, rows_per_day=300, start=dt.date(2026, 3, 5))
    csv = write_csv(good, tmp_path / "members.csv")
    spec = write_spec(tmp_path, csv, end="2026-03-10")
    spec_path = tmp_path / "members.yaml"
    monkeypatch.setenv("LIFECYCLE_SPECS", str(spec_path))

    code, _, first = _run(spec_path, refresh=False)
    assert code == 0 and first.promoted, first.failure
    # A weekday-only calendar: the weekend's two days are skipped, not stored, not an error.
    assert len(first.ingest.ingested) == 4 and len(first.ingest.empty) == 5
    lake = Lake(lifecycle_env.lake_dir, lifecycle_env.quarantine_dir, spec.name)
    manifest = lake.training_manifest(_training_digest(lake))
    # Capitalized levels are used as written: nothing unknown, AUC as plain scikit-learn's.
    table = pl.read_parquet(manifest["path"])
    assert (table["plan"] == "__unknown__").sum() == 0
    assert (table["is_member"] == "__unknown__").sum() == 0
    plain = _plain_sklearn_auc(good, manifest["split_days"])
    assert first.metrics["roc_auc"] == pytest.approx(plain, abs=0.01)

    # Nothing changed: no new version, exit 0.
    code, _, again = _run(spec_path, refresh=False)
    assert (code, again.outcome, again.model_version) == (0, UNCHANGED, None)
    assert again.ingest.skipped and not again.ingest.ingested

    # A spec change invalidates the stored days it affects, by itself.
    relaxed = spec.model_copy(
        update={
            "features": tuple(
                f.model_copy(update={"categories": None}) if f.name == "plan" else f
                for f in spec.features
            )
        }
    )
    stale = days_to_ingest(relaxed, lake, partitions_in_window(relaxed))
    assert set(stale.values()) == {"spec changed"} and len(stale) == 9

    good_sources = _feature_sources(lake)
    for case, (bad, named) in _bad_files(good).items():
        for refresh in (False, True):
            if isinstance(bad, str):
                csv.write_text(bad)
            else:
                write_csv(bad, csv)
            code, message, summary = _run(spec_path, refresh)
            where = f"{case} (refresh={refresh})"
            assert code != 0, where
            assert named in message, f"{where}: {message}"
            assert current_champion(lifecycle_env, spec.name) == "1", where
            assert _feature_sources(lake) <= good_sources, f"{where}: bad data stored"
            if summary is not None:
                assert summary.outcome == REFUSED and not summary.promoted, where
                assert summary.ingest.quarantined, where
                for day in summary.ingest.quarantined:
                    reports = list((lifecycle_env.quarantine_dir / spec.name / day).glob("*.json"))
                    assert reports, f"{where}: no quarantine report for {day}"
            if case.startswith("missing labels"):
                failed = {g["name"]: g for g in summary.gates if not g["passed"]}
                assert gates.QUARANTINE_GATE in failed, where
                assert (
                    "1 of 4 window day(s) quarantined"
                    in failed[gates.QUARANTINE_GATE]["description"]
                )

    # The good file again: re-read by itself (no --refresh), and nothing changed.
    write_csv(good, csv)
    code, _, restored = _run(spec_path, refresh=False)
    assert code == 0 and restored.outcome == UNCHANGED, restored.failure
    assert set(restored.ingest.reingested.values()) == {"source file changed"}
    assert current_champion(lifecycle_env, spec.name) == "1"


def _training_digest(lake: Lake) -> str:
    folder = lake.root / "training_sets" / "manifests"
    [path] = list(folder.glob("*.json"))
    return path.stem


# The console of one refused run, paths and run ids normalized: no traceback, every cause on one
# line (the preflight warning, each quarantined day, the reason it was not promoted).
CONSOLE_SNAPSHOT = (
    """\
preflight members (<tmp>/members.csv):
        720 rows, 7 columns
WARNING column 'tenure' is missing (closest: 'tenure_months'): every batch would be quarantined
        target 'left': 'Yes' -> 1, 'No' -> 0
        target 'left': 'Yes' (365), 'No' (355); positive rate 0.5069
        6 day(s) with rows from 2026-03-02 to 2026-03-09 (2 calendar day(s) without rows, \
skipped); rows per day 120..120 (median 120)
        rows per split: train 480, validation 120, test 120
WARNING splits {'validation': 120, 'test': 120} are under gates.min_rows_per_split=200: lower \
it, or widen training.test_fraction / training.validation_fraction (now 0.2 / 0.15)
WARNING 720 rows in the window < gates.min_training_rows=1000: lower it or widen \
training.window_days
members: ingested 0 day(s), 0 unchanged, 6 quarantined, 2 without rows (skipped)
"""
    + "".join(
        f"  quarantined {day}: 1 failure(s) in 120 rows against members_raw: tenure: "
        "column_in_dataframe (e.g. 'tenure')\n"
        for day in (
            "2026-03-02",
            "2026-03-03",
            "2026-03-04",
            "2026-03-05",
            "2026-03-06",
            "2026-03-09",
        )
    )
    + """\
members: training, evaluating and gating (one Dagster run)...
members v-
not promoted: 6 day(s) quarantined, too few left to train (first, 2026-03-02: 1 failure(s) in \
120 rows against members_raw: tenure: column_in_dataframe (e.g. 'tenure')); `champion` stays \
nobody.
Bento: not built
model card: not written
summary: <tmp>/home/reports/members/runs/<run id>.json
run log: <tmp>/home/reports/members/runs/<run id>.log
next: `make dev` (Dagster UI on http://127.0.0.1:3000), `make serve` (every champion on \
http://127.0.0.1:3001), `make mlflow-ui`, `lifecycle status`"""
)


def test_console_of_a_refused_run(lifecycle_env: Settings, tmp_path: Path) -> None:
    """The real command on a file whose column was renamed: exit code 3, no traceback, the
    cause on one line, and the Dagster log in the run's log file."""
    bad = members_frame(days=6, rows_per_day=120).rename({"tenure": "tenure_months"})
    csv = write_csv(bad, tmp_path / "members.csv")
    write_spec(tmp_path, csv)
    result = subprocess.run(
        [LIFECYCLE, "run", "--spec", str(tmp_path / "members.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "400"},
    )
    console = result.stdout + result.stderr
    assert result.returncode == 3, console[-3000:]
    assert "Traceback" not in console and "DagsterEvent" not in console, console
    normalized = re.sub(r"[0-9a-f-]{36}", "<run id>", console.replace(str(tmp_path), "<tmp>"))
    # A rich rule's dashes fill the terminal width: only its title is compared.
    lines = [
        line.strip("─ ") if line.startswith("─") else line.rstrip()
        for line in normalized.splitlines()
        if line.strip()
    ]
    assert lines == CONSOLE_SNAPSHOT.splitlines()
    logs = list((lifecycle_env.reports_dir / "members" / "runs").glob("*.log"))
    # One ingest run per block of consecutive days (the 2 empty days split the 6 days into two
    # blocks and need no run) and the training run.
    assert len(logs) == 3
    assert any("STEP_FAILURE" in log.read_text() for log in logs)
