"""The batching SQLite storage records a window run exactly as Dagster's own SQLite storage does:
every day its planned and its actual materialization, partition, data version, tags and status."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_assets import dagster_schema
from lifecycle_assets.dagster_storage import BATCH_SIZE_VARIABLE, BatchingSqliteEventLogStorage
from lifecycle_assets.defs.partition_ranges import range_tags

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
PROJECT_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-05")


@dg.asset(partitions_def=PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run())
def days(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Each day its own metadata; one data version for the step, as `defs.assets.data` does."""
    for day in context.partition_keys:
        context.add_asset_metadata({"rows": int(day[-2:])}, partition_key=day)
    return dg.MaterializeResult(data_version=dg.DataVersion("window"))


@dg.asset_check(asset=days, partitions_def=PARTITIONS)
def days_are_fine(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


JOB = dg.define_asset_job("days_job", selection=[days], partitions_def=PARTITIONS)
DEFS = dg.Definitions(assets=[days], asset_checks=[days_are_fine], jobs=[JOB])


def _instance(home: Path, yaml: Path | None, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """The instance of a fresh DAGSTER_HOME (the project's yaml names its folder by it)."""
    home.mkdir(parents=True)
    if yaml is not None:
        shutil.copy(yaml, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.get()


def _recorded(instance: dg.DagsterInstance) -> dict:
    """What the index holds about the asset: events in order, each day's latest event."""
    key = dg.AssetKey("days")
    kinds = (
        dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        dg.DagsterEventType.ASSET_MATERIALIZATION,
    )
    events = {
        kind.value: [
            (r.partition_key, r.asset_key)
            for r in instance.fetch_materializations(key, limit=100).records
        ]
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION
        else sorted(
            r.partition_key or ""
            for r in instance.get_event_records(dg.EventRecordsFilter(kind, asset_key=key))
        )
        for kind in kinds
    }
    latest = {}
    for day in DAYS:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
        ).records[0]
        materialization = record.asset_materialization
        latest[day] = (
            materialization.metadata["rows"].value,
            materialization.tags.get("dagster/data_version"),
        )
    # The asset's own row (what the UI and `get_latest_materialization_event` read).
    entry = instance.get_asset_records([key])[0].asset_entry
    return {
        **events,
        "entry": (
            entry.last_materialization_record.partition_key,
            entry.last_materialization.asset_materialization.metadata["rows"].value,
            entry.last_run_id is not None,
        ),
        "latest": latest,
        "materialized": sorted(instance.get_materialized_partitions(key)),
        "checks": len(
            instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(key, "days_are_fine"), limit=10
            )
        ),
    }


def _run(instance: dg.DagsterInstance) -> None:
    result = DEFS.resolve_job_def("days_job").execute_in_process(
        instance=instance, tags=range_tags(DAYS)
    )
    assert result.success


def test_project_yaml_names_the_batching_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _instance(tmp_path / "home", PROJECT_YAML, monkeypatch) as instance:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        assert (tmp_path / "home" / "history" / "runs.db").exists()


def test_a_window_run_is_recorded_as_by_dagsters_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BATCH_SIZE_VARIABLE, raising=False)
    with _instance(tmp_path / "plain", None, monkeypatch) as plain:
        assert not isinstance(plain.event_log_storage, BatchingSqliteEventLogStorage)
        _run(plain)
        expected = _recorded(plain)
    batched = []
    original = BatchingSqliteEventLogStorage._store_asset_events

    def spy(self: BatchingSqliteEventLogStorage, events: list) -> None:
        batched.append(len(events))
        original(self, events)

    monkeypatch.setattr(BatchingSqliteEventLogStorage, "_store_asset_events", spy)
    with _instance(tmp_path / "batched", PROJECT_YAML, monkeypatch) as instance:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        _run(instance)
        assert _recorded(instance) == expected
    # The four planned and the four actual materializations went as batches, not one by one.
    assert len(DAYS) in batched and max(batched) >= len(DAYS)
    assert expected["materialized"] == DAYS
    assert [rows for rows, _ in expected["latest"].values()] == [1, 2, 3, 4]


def _database(path: Path) -> tuple:
    """A database's objects, journal mode and the rows of its schema: the alembic revision and
    the data migrations marked done (whether with their times: each home's own). Other rows are
    the runs' own, or the home's (its telemetry id in `instance_info`, written on first use)."""
    with closing(sqlite3.connect(path)) as db:
        objects = set(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows = {
            table: db.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
            for table in tables & {"alembic_version", "secondary_indexes"}
        }
        mode = db.execute("PRAGMA journal_mode").fetchone()
    rows["secondary_indexes"] = [
        (*row[:2], None not in row[2:]) for row in rows.get("secondary_indexes", [])
    ]
    return objects, rows, mode


def _databases(instance: dg.DagsterInstance) -> dict[str, tuple]:
    """Every database of the instance's home: its own three, then each run's, in run order."""
    home = Path(instance.root_directory)
    found = {name: _database(home / path) for name, path in dagster_schema.DATABASES.items()}
    for number, record in enumerate(reversed(instance.get_run_records())):
        path = instance.event_log_storage.path_for_shard(record.dagster_run.run_id)
        found[f"run {number}"] = _database(Path(path))
    return found


def test_a_new_home_and_its_run_databases_are_what_dagster_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project's storage creates a new home's databases and each run's from the committed
    schemas, not through Dagster: the files are the same as Dagster's own."""
    with _instance(tmp_path / "plain", None, monkeypatch) as plain:
        _run(plain)
        _run(plain)
        expected, recorded = _databases(plain), _recorded(plain)
    with _instance(tmp_path / "batched", PROJECT_YAML, monkeypatch) as instance:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        _run(instance)
        _run(instance)
        assert _databases(instance) == expected
        assert _recorded(instance) == recorded
    assert expected["run 0"][2] == ("wal",)


def test_the_committed_schemas_are_what_the_installed_dagster_makes(tmp_path: Path) -> None:
    """A Dagster upgrade that changes a database fails here: run `make dagster-schema`."""
    assert dagster_schema.usable() is None
    dagster_schema.regenerate(tmp_path)
    for name in [*dagster_schema.DATABASES, dagster_schema.RUN]:
        committed = dagster_schema.schema_file(name).read_text()
        assert (tmp_path / f"{name}.sql").read_text() == committed, name


def test_schemas_of_another_dagster_are_left_to_dagster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dagster_schema, "usable", lambda: "runs.sql is Dagster 0.0's schema")
    with _instance(tmp_path / "home", PROJECT_YAML, monkeypatch) as instance:
        _run(instance)
        assert len(instance.get_run_records()) == 1
    assert "Dagster creates the new home's databases itself" in caplog.text


RELEASE = threading.Event()


@dg.op
def waits(context: dg.OpExecutionContext) -> None:
    """Holds its step open until the test has seen the step start from another instance."""
    context.log.info("started")
    assert RELEASE.wait(60), "the watcher never saw the step start"


@dg.job
def waiting_job() -> None:
    waits()


def test_a_watcher_sees_a_running_steps_events_as_they_happen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the UI's live run log relies on: Dagster's `watch` wakes on a change to the run's
    database file, which a commit to its log does not make; the held databases are checkpointed
    shortly after each use, so a watching process still sees each event while the run goes on."""
    RELEASE.clear()
    run_id = str(uuid.uuid4())
    seen: list[str] = []

    def on_event(event: dg.EventLogEntry, cursor: str) -> None:
        seen.append(event.dagster_event_type.value if event.dagster_event_type else "log")
        if "STEP_START" in seen:
            RELEASE.set()

    with _instance(tmp_path / "home", PROJECT_YAML, monkeypatch) as instance:
        runner = threading.Thread(
            target=lambda: waiting_job.execute_in_process(instance=instance, run_id=run_id)
        )
        runner.start()
        # The UI's process: another instance on the same home, watching the run.
        with dg.DagsterInstance.get() as ui:
            deadline = time.monotonic() + 30
            while not Path(ui.event_log_storage.path_for_shard(run_id)).exists():
                assert time.monotonic() < deadline, "the run never started"
                time.sleep(0.05)
            ui.watch_event_logs(run_id, None, on_event)
            try:
                assert RELEASE.wait(30), f"the watcher saw only {seen} while the step ran"
            finally:
                RELEASE.set()
                runner.join(60)
                ui.end_watch_event_logs(run_id, on_event)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS


def test_held_databases_are_closed_with_their_logs_when_the_instance_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No connection, log or index file outlives the instance: each held database is
    checkpointed and closed by `dispose`, its events all in the database file."""
    home = tmp_path / "home"
    with _instance(home, PROJECT_YAML, monkeypatch) as instance:
        _run(instance)
        run_id = instance.get_run_records()[0].dagster_run.run_id
        assert list((home / "history" / "runs").glob("*.db-wal"))  # held open: logs kept
    assert not list((home / "history" / "runs").glob("*.db-wal"))
    assert not list((home / "history" / "runs").glob("*.db-shm"))
    with closing(sqlite3.connect(home / "history" / "runs" / f"{run_id}.db")) as db:
        kinds = {kind for (kind,) in db.execute("SELECT dagster_event_type FROM event_logs")}
    assert {"PIPELINE_START", "PIPELINE_SUCCESS", "ASSET_MATERIALIZATION"} <= kinds


KILLED_AFTER_RUN = """
import os, signal, sys
import dagster as dg
from lifecycle_assets_tests.test_dagster_storage import waiting_job, RELEASE
RELEASE.set()
with dg.DagsterInstance.get() as instance:
    result = waiting_job.execute_in_process(instance=instance, run_id=sys.argv[1])
    assert result.success
    os.kill(os.getpid(), signal.SIGKILL)  # no dispose, no exit handler: the log never closed
"""


def test_a_killed_process_loses_no_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits append to the log without a flush, and the process dies before any checkpoint
    or close: every event is still read back by the next process."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT_YAML, home / "dagster.yaml")
    run_id = str(uuid.uuid4())
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_RUN, run_id], env=env, capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        kinds = [e.dagster_event_type for e in instance.all_logs(run_id) if e.dagster_event]
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    assert kinds[0] == dg.DagsterEventType.RUN_START
    assert kinds[-1] == dg.DagsterEventType.RUN_SUCCESS
    assert dg.DagsterEventType.STEP_SUCCESS in kinds
