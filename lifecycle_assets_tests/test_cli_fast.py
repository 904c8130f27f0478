"""The CLI's read-only commands load no MLflow, read the registry as MLflow does, and `trace`
narrows its search to the day a UUIDv7 prediction id names."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import polars as pl

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.provenance.prediction_index import candidate_days, may_hold, uuid7_time
from lifecycle_assets.registry.reader import SqliteReader, reader_for, sqlite_path
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.conftest import register_champion

ROOT = Path(__file__).resolve().parents[1]


def modules_after(args: list[str], env: dict[str, str]) -> set[str]:
    """Run `lifecycle ARGS` in a fresh interpreter; the top-level packages it imported."""
    code = (
        "import sys\n"
        "from lifecycle_assets.cli import main\n"
        f"try:\n    main({args!r}, standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print('MODULES=' + ','.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("MODULES="))
    return set(line.removeprefix("MODULES=").split(","))


def test_registry_reader_reads_what_mlflow_reads(
    lifecycle_env: Settings, spec: ModelSpec, small_feature_table: pl.DataFrame
) -> None:
    ref = register_champion(lifecycle_env, spec, small_feature_table)
    client = configure_mlflow(lifecycle_env)
    path = sqlite_path(lifecycle_env.mlflow_tracking_uri)
    assert path is not None and path.is_file()
    reader = SqliteReader(path)
    for alias_or_version in (config.CHAMPION_ALIAS, ref.version):
        expected = resolve(client, spec.name, alias_or_version).to_dict()
        assert reader.resolve(spec.name, alias_or_version).to_dict() == expected
    assert reader.resolve(spec.name, config.CANARY_ALIAS) is None
    assert (
        reader_for(lifecycle_env).resolve(spec.name, config.CHAMPION_ALIAS).version == ref.version
    )

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["--help"], ["history", spec.name], ["status", spec.name, "--json"]):
        loaded = modules_after(args, env)
        assert "mlflow" not in loaded and "dagster" not in loaded, args
    status = subprocess.run(
        [sys.executable, "-c", "from lifecycle_assets.cli import main; main()", "status",
         spec.name, "--json", "--service-url", "http://127.0.0.1:9"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    held = json.loads(status.stdout)
    assert held[config.CHAMPION_ALIAS]["version"] == ref.version
    assert held[config.CHAMPION_ALIAS]["by"] == "pytest"


def test_a_uuid7_id_names_the_days_to_read(tmp_path: Path) -> None:
    minted = dt.datetime(2026, 3, 4, 23, 59, 30, tzinfo=dt.UTC)
    millis = int(minted.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (0b10 << 62) | 0x123456789
    prediction_id = str(uuid.UUID(int=value))
    assert uuid7_time(prediction_id) == minted
    days = candidate_days(prediction_id)
    assert days == {"2026-03-03", "2026-03-04", "2026-03-05"}
    log = tmp_path / "credit_default"
    assert may_hold(log / "2026-03-04" / "host-1-2.jsonl", days)
    assert not may_hold(log / "2026-02-01" / "host-1-2.jsonl", days)
    assert may_hold(log / "data" / "data.1.log", days)  # no day folder: read it
    assert candidate_days(uuid.uuid4().hex) is None and candidate_days("nonsense") is None


def test_piped_output_keeps_tables_whole_and_rules_short() -> None:
    """Off a terminal the console is as wide as its content (tables are never cut to 80
    columns), but a rule spanned that whole width: `make run > log` wrote 4000 dashes per model."""
    from rich.table import Table

    from lifecycle_assets.cli.app import PIPED_WIDTH, console, rule

    assert console.width == PIPED_WIDTH  # pytest's stdout is no terminal
    reason = "passed gates: " + ", ".join(f"gate_number_{i}" for i in range(12))
    with console.capture() as captured:
        rule("credit_default v1")
        table = Table("alias", "reason")
        table.add_row("champion", reason)
        console.print(table)
    lines = captured.get().splitlines()
    assert len(lines[0]) == 80 and "credit_default v1" in lines[0], lines[0]
    assert any(reason in line for line in lines), lines
