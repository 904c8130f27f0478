"""The prediction log: no silent loss, no torn lines, no poison pills (issue 13, items 6-7).

The writer runs in-process against real files: an unwritable folder, a real full filesystem (a
64 KB tmpfs where mounting is allowed, else a segment that points at /dev/full, whose writes
fail with ENOSPC in the kernel) and NaN values. The readers of logs and label files skip and
quarantine bad lines and files and process the rest. Over HTTP: `test_prediction_log_e2e.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import prometheus_client
import pytest

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.data import ground_truth, prediction_log
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.defs.assets.labels import build_label_assets
from lifecycle_assets.defs.assets.monitoring import build_monitoring_assets, typed_log
from lifecycle_assets.defs.resources import JsonIOManager, LifecycleResource
from lifecycle_assets.registry.models import LoadedModel
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.metrics import prediction_metrics
from lifecycle_assets.serving.model_set import ModelSet
from lifecycle_assets.serving.model_source import ServedModel, load_served_model
from lifecycle_assets.serving.prediction_log import PredictionLogWriter, new_prediction_id
from lifecycle_assets.serving.predictor import Predictor
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.log_rows import append_log_rows


def test_unwritable_log_location_is_surfaced_not_silent(registered_champion, spec) -> None:
    settings = Settings.from_env()
    blocked = settings.prediction_log_dir / spec.name
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the log folder should be")
    served = load_served_model({**os.environ, "LIFECYCLE_MODEL_SOURCE": "registry"})
    predictor = Predictor(served, settings)
    records = (
        simulate_day(dt.date(2026, 3, 5), rows_per_day=4).select(spec.input_columns).to_dicts()
    )

    async def predict_then_let_the_log_run() -> list[dict]:
        rows = await predictor.predict(predictor.validator.validate(records))
        await asyncio.sleep(0.2)
        return rows

    rows = asyncio.run(predict_then_let_the_log_run())
    assert len(rows) == 4 and all(0 <= r["probability"] <= 1 for r in rows)
    assert predictor.log_failures == 4
    assert predictor.metadata()["prediction_log_failures"] == 4
    assert predictor.metadata()["health"]["prediction_log"] == "failing: ENOTDIR, 4 rows lost"


# -- the writer, in-process -----------------------------------------------------------------


def _models(spec: ModelSpec) -> ModelSet:
    """What the writer reads from a model set: names, versions, digests and the spec."""
    ref = ModelRef(spec.name, "3", "run", "src", {config.TAG_TRAINING_DIGEST: "digest-3"})
    return ModelSet(champion=ServedModel(LoadedModel(ref, None, spec), "registry", "now"))


def _batch(spec: ModelSpec, n: int) -> tuple[list[dict], list[dict]]:
    """Answer rows and request records as the predictor hands them to the writer."""
    records = simulate_day(dt.date(2026, 3, 5), rows_per_day=n).select(spec.input_columns)
    rows = [
        {
            "prediction": 0,
            "probability": 0.25,
            "prediction_id": new_prediction_id(),
            "record_id": f"r{i}",
            "model_name": spec.name,
            "model_version": "3",
            "variant": "champion",
        }
        for i in range(n)
    ]
    return rows, records.to_dicts()


def _lost_counter(model: str) -> float:
    prediction_metrics()  # registered once per process
    sample = prometheus_client.REGISTRY.get_sample_value(
        "lifecycle_prediction_log_failures_total", {"model_name": model}
    )
    return sample or 0.0


def test_prediction_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_prediction_id() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 50
    # The first 48 bits are Unix milliseconds.
    millis = int(uuid.UUID(ids[0]).hex[:12], 16)
    assert abs(millis / 1000 - dt.datetime.now(dt.UTC).timestamp()) < 5


def test_nan_and_infinities_are_logged_as_null_and_the_day_still_reads(
    lifecycle_env: Settings, spec: ModelSpec
) -> None:
    writer = PredictionLogWriter(lifecycle_env.prediction_log_dir, spec.name, prediction_metrics())
    rows, records = _batch(spec, 3)
    records[0]["income"] = math.nan
    records[1]["credit_score"] = math.inf
    rows[2]["probability"] = -math.inf
    writer.log(rows, records, _models(spec), [1.5, 2.0, math.nan])
    (path,) = prediction_log.segment_files(lifecycle_env.prediction_log_dir, spec.name)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    logged = [json.loads(line) for line in text.splitlines()]
    assert logged[0]["income"] is None and logged[1]["credit_score"] is None
    assert logged[2]["score"] is None and logged[2]["latency_ms"] is None
    assert logged[0]["training_digest"] == "digest-3" and logged[0]["score"] == 0.25
    today = dt.datetime.now(dt.UTC).date()
    scan = prediction_log.scan_days(lifecycle_env, spec.name, today, today)
    assert scan.rows.height == 3 and not scan.bad
    assert writer.health() == "ok" and writer.rows_written == 3
    # Rows that cannot even be built (here: a record missing) are counted too, never raised.
    writer.log(rows, records[:1], _models(spec))
    assert writer.health() == "failing: ValueError, 3 rows lost"


def test_integers_too_wide_for_a_column_are_read_as_the_numbers_scored(
    lifecycle_env: Settings, spec: ModelSpec
) -> None:
    """The service accepts (and scores as a float) an integer of up to 300 digits; the log
    keeps it as sent. Reading the day must give that number, not a null (polars reads no
    integer wider than 128 bits and nulls what a 64-bit column cannot hold)."""
    writer = PredictionLogWriter(lifecycle_env.prediction_log_dir, spec.name, prediction_metrics())
    rows, records = _batch(spec, 3)
    records[0]["income"] = 10**299
    records[1]["loan_amount"] = 2**64
    writer.log(rows, records, _models(spec), [1.0] * 3)
    today = dt.datetime.now(dt.UTC).date()
    scan = prediction_log.scan_days(lifecycle_env, spec.name, today, today)
    assert scan.rows.height == 3 and not scan.bad
    table = typed_log(scan.rows, spec)
    assert table["income"][0] == 1e299
    assert table["loan_amount"][1] == 2.0**64
    assert table["income"][1] == records[1]["income"]


def test_a_segment_deleted_under_the_writer_is_written_again_not_lost(
    lifecycle_env: Settings, spec: ModelSpec
) -> None:
    """Someone removes the day's segment (or the whole log folder) while the service runs:
    the rows that follow must land in a new file the readers find, not in the deleted one."""
    log_dir = lifecycle_env.prediction_log_dir
    writer = PredictionLogWriter(log_dir, spec.name, prediction_metrics())
    writer.log(*_batch(spec, 2), _models(spec), [1.0, 1.0])
    (path,) = prediction_log.segment_files(log_dir, spec.name)
    shutil.rmtree(log_dir / spec.name)
    rows, records = _batch(spec, 3)
    writer.log(rows, records, _models(spec), [1.0] * 3)
    logged = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["prediction_id"] for row in logged] == [row["prediction_id"] for row in rows]
    assert writer.rows_written == 5 and writer.health() == "ok"


@contextlib.contextmanager
def full_filesystem(folder: Path) -> Iterator[str]:
    """`folder` on a 64 KB tmpfs (yields "tmpfs"), or, where mounting is not allowed,
    "dev-full": the caller points its file at /dev/full, where every write is ENOSPC."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True
    )
    try:
        yield "tmpfs" if mounted.returncode == 0 else "dev-full"
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_disk_loses_rows_counted_never_torn(
    lifecycle_env: Settings, spec: ModelSpec
) -> None:
    log_dir = lifecycle_env.prediction_log_dir
    with full_filesystem(log_dir) as kind:
        writer = PredictionLogWriter(log_dir, spec.name, prediction_metrics())
        today = dt.datetime.now(dt.UTC).date()
        if kind == "dev-full":
            writer.path(today).parent.mkdir(parents=True)
            writer.path(today).symlink_to("/dev/full")
        before = _lost_counter(spec.name)
        models, sent = _models(spec), 0
        # Batches of 7 rows (about 4.5 KB, more than a page): the one that meets the limit is
        # cut short inside a line, which must not stay in the file.
        while writer.rows_lost < 30:
            rows, records = _batch(spec, 7)
            writer.log(rows, records, models, [1.0] * 7)
            sent += 7
            assert sent < 2000, "the filesystem never filled"
        path = writer.path(today)
        lines = [] if kind == "dev-full" else path.read_bytes().split(b"\n")
        if lines:
            assert lines.pop() == b"", "the file ends with a complete line"
        logged = [prediction_log.parse_row(line) for line in lines]
        assert len(logged) == writer.rows_written
        assert writer.rows_written + writer.rows_lost == sent
        assert _lost_counter(spec.name) - before == writer.rows_lost
        assert writer.health() == f"failing: ENOSPC, {writer.rows_lost} rows lost"
        assert writer.status()["last_error"] == "ENOSPC"
        if kind == "tmpfs":
            # Space again: the writer recovers, and says rows were lost on the way.
            subprocess.run(["mount", "-o", "remount,size=1m", str(log_dir)], check=True)
            writer.log(*_batch(spec, 2), models, [1.0, 1.0])
            assert writer.health() == f"recovered: ENOSPC, {writer.rows_lost} rows lost"
            scan = prediction_log.scan_days(lifecycle_env, spec.name, today, today)
            assert scan.rows.height == writer.rows_written and not scan.bad


# -- the readers: poison lines and files are quarantined, the rest is processed -------------


def _resources() -> dict:
    return {"lifecycle": LifecycleResource(), "json_io_manager": JsonIOManager()}


def test_a_poison_log_line_is_quarantined_and_the_day_processed(
    lifecycle_env: Settings, spec: ModelSpec
) -> None:
    day = dt.date(2026, 3, 5)
    at = dt.datetime.combine(day, dt.time(10), tzinfo=dt.UTC)
    good = [
        {"prediction_id": f"p{i}", "predicted_at": at, "model_name": spec.name, "age": 30 + i}
        for i in range(4)
    ]
    # Valid rows whose types disagree with the others' must not stop the day either.
    good[3] |= {"age": True, "record_id": {"nested": 1}}
    good[1] |= {"record_id": 7}
    (path,) = append_log_rows(lifecycle_env.prediction_log_dir, spec.name, good[:2])
    poison = [
        b'{"prediction_id": "bad-nan", "predicted_at": "2026-03-05T10:00:00+00:00", "age": NaN}',
        b'{"prediction_id": "torn", "predicted_at": "2026-03-05T1',
        b"\xff\xfe not text",
        b"[1, 2]",
        b'{"predicted_at": "2026-03-05T10:00:00+00:00"}',
    ]
    with path.open("ab") as handle:
        handle.write(b"\n".join(poison) + b"\n")
    append_log_rows(lifecycle_env.prediction_log_dir, spec.name, good[2:])

    scan = prediction_log.scan_days(lifecycle_env, spec.name, day, day)
    assert sorted(scan.rows["prediction_id"]) == ["p0", "p1", "p2", "p3"]
    assert [(b.line, b.path) for b in scan.bad] == [(n, str(path)) for n in range(3, 8)]
    assert "NaN is not valid JSON" in scan.bad[0].reason
    quarantined = lifecycle_env.quarantine_dir / spec.name / "prediction_logs" / day.isoformat()
    copied = (quarantined / f"{path.stem}.lines").read_bytes()
    assert copied == b"\n".join(poison) + b"\n"
    report = json.loads((quarantined / f"{path.stem}.report.json").read_text())
    assert report["file"] == str(path) and [b["line"] for b in report["bad_lines"]] == [
        3,
        4,
        5,
        6,
        7,
    ]

    # The daily asset processes the rest and names what it skipped; a re-run copies nothing new.
    result = dg.materialize(
        build_monitoring_assets(spec), partition_key=day.isoformat(), resources=_resources()
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["rows"] == 4 and metadata["bad_lines"] == 5
    assert f"{path}:3: not valid JSON" in metadata["bad_line_reports"]["lines"][0]
    assert (quarantined / f"{path.stem}.lines").read_bytes() == copied

    # An unterminated last line is a write in progress while its segment is live, and bad
    # once the segment has been still for a while (its writer died mid-line).
    tail = path.with_name("other-1-0.jsonl")
    tail.write_bytes(b'{"prediction_id": "p9", "predicted_at": "2026-03-05T1')
    scan = prediction_log.scan_days(lifecycle_env, spec.name, day, day)
    assert scan.pending_tails == 1 and len(scan.bad) == 5 and scan.rows.height == 4
    old = tail.stat().st_mtime - 2 * prediction_log.LIVE_SEGMENT_SECONDS
    os.utime(tail, (old, old))
    scan = prediction_log.scan_days(lifecycle_env, spec.name, day, day)
    assert scan.pending_tails == 0 and len(scan.bad) == 6
    assert str(scan.bad[0]).startswith(f"{tail}:1: incomplete last line: not valid JSON")


def _write_labels(folder: Path, day: dt.date) -> dict[str, Path]:
    folder.mkdir(parents=True)
    at = f"{day.isoformat()}T08:00:00Z"
    good = pl.DataFrame({"prediction_id": ["a", "b"], "label": [0, 1], "labelled_at": [at] * 2})
    good.write_parquet(folder / "a-good.parquet")
    mixed = folder / "b-mixed.csv"
    mixed.write_text(
        "prediction_id,label,labelled_at\n"
        f"c,1,{at}\n"
        f"d,yes,{at}\n"  # line 3: not a label
        f"e,0,{at},extra\n"  # line 4: one field too many
        f"f,0,not a time\n"  # line 5
        f"g,0,{at}\n"
    )
    broken = folder / "c-broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    return {"mixed": mixed, "broken": broken}


def test_bad_label_rows_and_files_are_quarantined_and_the_rest_used(
    lifecycle_env: Settings, spec: ModelSpec
) -> None:
    day = dt.date(2026, 3, 5)
    folder = ground_truth.labels_folder(lifecycle_env.landing_dir, spec.name)
    bad = _write_labels(folder, day)
    quarantine = ground_truth.labels_quarantine(lifecycle_env.quarantine_dir, spec.name)

    found = ground_truth.arrivals(folder, day, spec.task, quarantine)
    assert sorted(found.labels["prediction_id"]) == ["a", "b", "c", "g"]
    problems = [str(p) for p in found.problems]
    assert problems[0] == f"{bad['mixed']}: line 3: column 'label' holds 'yes', not a number"
    assert problems[1] == f"{bad['mixed']}: line 4: 4 field(s), the header has 3"
    assert problems[2].startswith(f"{bad['mixed']}: line 5: column 'labelled_at'")
    assert problems[3].startswith(f"{bad['broken']}: cannot be read as parquet")
    reports = sorted(p.name for p in quarantine.glob("*.report.json"))
    assert [name.split("-")[:2] for name in reports] == [["b", "mixed"], ["c", "broken"]]
    rows = [json.loads(line) for line in next(quarantine.glob("b-mixed-*.rows.jsonl")).open()]
    assert [r["where"] for r in rows] == ["line 3", "line 4", "line 5"]
    assert next(quarantine.glob("c-broken-*.parquet")).read_bytes() == bad["broken"].read_bytes()
    with pytest.raises(ground_truth.LabelFileError, match="line 3"):
        ground_truth.read_labels(folder, day)

    # The ground_truth asset runs on, day after day, with the bad parts set aside.
    for _ in range(2):
        result = dg.materialize(
            build_label_assets(spec),
            partition_key=day.isoformat(),
            selection=[dg.AssetKey([spec.name, ground_truth.GROUND_TRUTH])],
            resources=_resources(),
        )
        assert result.success
        (event,) = result.get_asset_materialization_events()
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        assert metadata["rows"] == 4 and metadata["label_problems"] == 4
    assert len(list(quarantine.glob("*.report.json"))) == 2
