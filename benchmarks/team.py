"""Team mode against the embedded default: the same `lifecycle run` on the same data, twice.

Embedded: SQLite Dagster instance, SQLite MLflow with `file://` artifacts, lake on local disk
(the project's `dagster.yaml`, a fresh temporary LIFECYCLE_HOME / DAGSTER_HOME).

Team (README "Team mode"): `LIFECYCLE_PROFILE=team`; Dagster on PostgreSQL through
`deploy/dagster/dagster.yaml` (a fresh database on 127.0.0.1:5432), the ledger on PostgreSQL
(the same database), the lake, quarantine, reports and Dagster asset values on S3 (a moto S3
server started here on a free loopback port), and an MLflow server started here
(`lifecycle mlflow-server`'s command: PostgreSQL backend on a database of its own, artifacts
proxied to the S3 bucket). The servers come from `lifecycle_assets_tests/team_servers.py`, the
same helpers the team-mode tests use. `lifecycle run` executes its jobs in its own process
(`execute_in_process`), so no Celery worker takes part in either mode.

Both runs use the same specs (the built-ins, rows per day times `--size`): the simulator is
seeded, so the data is the same. Printed: wall times, the ratio team / embedded, and where the
difference goes: per kind of Dagster run (ingest, training, model card) its run time and step
time, per step its summed duration, and the time outside any run (process start, imports,
the CLI's own work). Peak memory counts the lifecycle process tree only, not the servers.

    python benchmarks/team.py               # 1x, both modes (several minutes)
    python benchmarks/team.py --size 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from lifecycle import (
    GIB,
    Measurement,
    embedded_env,
    measure_lifecycle,
    outside_runs,
    scaled_specs,
)

from lifecycle_assets.mlflow_server import SERVER_ENVIRONMENT, server_command
from lifecycle_assets.spec import ENV_SPECS
from lifecycle_assets_tests.team_servers import (
    MlflowServer,
    S3Server,
    create_database,
    drop_database,
    free_port,
    stop_group,
    team_dagster_home,
    team_environment,
    wait_for_port,
)

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto(folder: Path) -> tuple[subprocess.Popen, S3Server]:
    """moto's standalone S3 server on a free loopback port, with one fresh bucket."""
    import boto3

    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    with (folder / "moto.log").open("w") as out:
        process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for_port(port, process, "moto_server")
    bucket = f"lifecycle-bench-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=bucket)
    return process, S3Server(endpoint, bucket)


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def start_mlflow(
    folder: Path, s3: S3Server, database: str
) -> tuple[subprocess.Popen, MlflowServer]:
    """The MLflow server `lifecycle mlflow-server` starts: PostgreSQL store, S3 artifacts."""
    port = free_port()
    artifacts = s3.url("mlartifacts")
    command = server_command(
        database_url=database, artifacts_destination=artifacts, host="127.0.0.1", port=port
    )
    env = {
        **os.environ,
        **CREDENTIALS,
        **SERVER_ENVIRONMENT,
        "AWS_ENDPOINT_URL": s3.endpoint_url,
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url,
    }
    with (folder / "mlflow.log").open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out, env=env, start_new_session=True)
    wait_for_port(port, process, "mlflow server", timeout=150)
    return process, MlflowServer(f"http://127.0.0.1:{port}", database, artifacts)


def print_comparison(embedded: Measurement, team: Measurement) -> None:
    """Wall times, the ratio, and where the difference goes."""
    print()
    print(f"{'':<50}{'embedded':>10}{'team':>10}{'team - emb':>12}")

    def row(name: str, a: float, b: float) -> None:
        print(f"{name:<50}{a:>10.1f}{b:>10.1f}{b - a:>+12.1f}")

    row("wall s", embedded.wall_s, team.wall_s)
    row("compute s (sum of steps)", embedded.compute_s, team.compute_s)
    row("cpu s (lifecycle process tree)", embedded.cpu_s, team.cpu_s)
    row("time in Dagster runs s", embedded.stats.run_seconds, team.stats.run_seconds)
    row(
        "outside any run s",
        embedded.wall_s - embedded.stats.run_seconds,
        team.wall_s - team.stats.run_seconds,
    )
    for index, part in enumerate(("before the first run", "between runs", "after the last run")):
        row(f"  {part}", outside_runs(embedded)[index], outside_runs(team)[index])
    for kind in sorted(set(embedded.stats.per_job) | set(team.stats.per_job)):
        a, b = embedded.stats.per_job.get(kind, {}), team.stats.per_job.get(kind, {})
        runs = f"({int(a.get('runs', 0))}/{int(b.get('runs', 0))} runs)"
        row(f"  {kind} run time {runs}", a.get("run_s", 0.0), b.get("run_s", 0.0))
        row(f"  {kind} steps", a.get("step_s", 0.0), b.get("step_s", 0.0))
        row(
            f"  {kind} run overhead",
            a.get("run_s", 0.0) - a.get("step_s", 0.0),
            b.get("run_s", 0.0) - b.get("step_s", 0.0),
        )
    print("per step (summed over runs and models):")
    steps = set(embedded.stats.per_step) | set(team.stats.per_step)
    gaps = {s: team.stats.per_step.get(s, 0.0) - embedded.stats.per_step.get(s, 0.0) for s in steps}
    for step in sorted(steps, key=lambda s: -abs(gaps[s])):
        row(f"  {step}", embedded.stats.per_step.get(step, 0.0), team.stats.per_step.get(step, 0.0))
    print(
        f"{'peak memory GiB (lifecycle process tree)':<50}{embedded.peak_bytes / GIB:>10.2f}"
        f"{team.peak_bytes / GIB:>10.2f}"
    )
    print(
        f"\nteam / embedded wall: {team.wall_s / embedded.wall_s:.2f}x"
        f" (exit codes {embedded.exit_code} / {team.exit_code})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1, help="multiple of rows per day")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="lifecycle-bench-team-"))
    specs = scaled_specs(work / "specs", args.size)
    servers: list[subprocess.Popen] = []
    databases: list[str] = []
    try:
        print(f"embedded: lifecycle run at {args.size}x in {work / 'embedded'}", flush=True)
        (work / "embedded").mkdir()
        env = embedded_env(work / "embedded")
        env[ENV_SPECS] = specs
        embedded = measure_lifecycle("embedded", env, work / "embedded", work / "embedded.log")
        print(f"embedded: exit {embedded.exit_code}, wall {embedded.wall_s:.1f} s", flush=True)

        print("team: starting moto S3, PostgreSQL databases, the MLflow server", flush=True)
        (work / "team").mkdir()
        moto, s3 = start_moto(work)
        servers.append(moto)
        databases += [create_database("lifecycle_bench_mlflow"), create_database("lifecycle_bench")]
        mlflow_process, mlflow = start_mlflow(work, s3, databases[0])
        servers.append(mlflow_process)
        env = embedded_env(work / "team")
        env.update(CREDENTIALS)
        env.update(team_environment(s3, databases[1], mlflow, f"bench-{uuid.uuid4().hex[:8]}"))
        env.update(team_dagster_home(work / "team" / "dagster_home_team", databases[1]))
        env[ENV_SPECS] = specs
        print(f"team: lifecycle run at {args.size}x in {work / 'team'}", flush=True)
        team = measure_lifecycle("team", env, work / "team", work / "team.log")
        print(f"team: exit {team.exit_code}, wall {team.wall_s:.1f} s", flush=True)
        for m, log in ((embedded, "embedded.log"), (team, "team.log")):
            if m.exit_code not in (0, 3):
                print(f"--- {m.label} failed ({m.exit_code}):\n{(work / log).read_text()[-3000:]}")
        print_comparison(embedded, team)
        if args.json:
            from dataclasses import asdict

            args.json.write_text(
                json.dumps({m.label: asdict(m) for m in (embedded, team)}, indent=2)
            )
        return 0 if {embedded.exit_code, team.exit_code} <= {0, 3} else 1
    finally:
        for process in reversed(servers):
            stop_group(process)
        for database in databases:
            drop_database(database)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
