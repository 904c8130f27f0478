"""Real servers for team-mode tests: a moto S3 server started here, the machine's PostgreSQL.

Team tests never skip: on the project's machines PostgreSQL and RabbitMQ run before any work
begins, so a missing server is a broken machine and the tests say so loudly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "LIFECYCLE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RABBITMQ_URL = os.environ.get(
    "LIFECYCLE_TEST_CELERY_BROKER", "pyamqp://guest:guest@127.0.0.1:5672//"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3 server on a free loopback port, with one bucket, and its endpoint
    exported the way production points at MinIO (AWS_ENDPOINT_URL, dummy credentials)."""
    import boto3

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    moto_server = Path(sys.executable).with_name("moto_server")
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(moto_server), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {key: os.environ.get(key) for key in [*credentials, "AWS_ENDPOINT_URL"]}
    try:
        wait_for_port(port, process, "moto_server")
        os.environ.update(credentials)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        bucket = f"lifecycle-test-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield S3Server(endpoint, bucket)
    finally:
        process.terminate()
        process.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def create_database(prefix: str = "lifecycle_test") -> str:
    """A fresh database on the machine's PostgreSQL; its URL. Fails loudly if there is none."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as error:
        raise RuntimeError(
            f"team tests need PostgreSQL at {POSTGRES_ADMIN_URL} "
            f"(set LIFECYCLE_TEST_POSTGRES_URL): {error}"
        ) from error
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    import psycopg2

    name = url.rsplit("/", 1)[1]
    conn = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own for one test, dropped afterwards."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@dataclass(frozen=True)
class MlflowServer:
    url: str
    database_url: str
    artifacts: str


@pytest.fixture(scope="session")
def mlflow_server(
    moto_s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """`mlflow server` on PostgreSQL with artifacts proxied to the moto S3 bucket: what
    `lifecycle mlflow-server` starts, on a database of its own."""
    from lifecycle_assets.mlflow_server import SERVER_ENVIRONMENT, server_command

    database = create_database("lifecycle_mlflow")
    port = free_port()
    artifacts = moto_s3.url("mlartifacts")
    command = server_command(
        database_url=database, artifacts_destination=artifacts, host="127.0.0.1", port=port
    )
    log = tmp_path_factory.mktemp("mlflow") / "server.log"
    env = {**os.environ, **SERVER_ENVIRONMENT, "MLFLOW_S3_ENDPOINT_URL": moto_s3.endpoint_url}
    with log.open("w") as out:
        # Its own process group: the server forks uvicorn workers that must stop with it.
        process = subprocess.Popen(command, stdout=out, stderr=out, env=env, start_new_session=True)
    try:
        wait_for_port(port, process, "mlflow server", timeout=150)
        yield MlflowServer(f"http://127.0.0.1:{port}", database, artifacts)
    finally:
        stop_group(process)
        drop_database(database)


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`, from /proc.

    The leader may be gone while processes it forked still run in its group: `killpg` does not
    say whether anyone received the signal, and a zombie still counts for `killpg(pgid, 0)`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended while we looked
            continue
        # Fields after the command (which may hold spaces and parentheses): state ppid pgrp ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _wait_group_empty(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_group(process: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop a process started with `start_new_session=True` and everything it forked.

    Waiting for the leader alone is not enough: `mlflow server` exits when SIGTERM reaches it
    while its uvicorn worker, in graceful shutdown, waits for a request stuck on an unreachable
    store, and lingered for minutes after the test. So the whole group gets `grace` seconds to
    end after SIGTERM, then SIGKILL; a group that survives even that fails loudly."""
    import signal

    deadline = time.monotonic() + grace
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    if not _wait_group_empty(process.pid, timeout=max(0.0, deadline - time.monotonic())):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    if not _wait_group_empty(process.pid, timeout=10):
        raise RuntimeError(
            f"processes {group_members(process.pid)} of group {process.pid} survived SIGKILL"
        )


def team_environment(
    s3: S3Server, database_url: str, mlflow: MlflowServer, prefix: str
) -> dict[str, str]:
    """The variables that switch a process to team mode on the test's servers."""
    return {
        "LIFECYCLE_PROFILE": "team",
        "DATABASE_URL": database_url,
        "LIFECYCLE_STORAGE_URL": s3.url(prefix),
        "MLFLOW_TRACKING_URI": mlflow.url,
        "AWS_ENDPOINT_URL": s3.endpoint_url,
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url,
    }


TEAM_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster" / "dagster.yaml"


def team_dagster_home(folder: Path, database_url: str) -> dict[str, str]:
    """A DAGSTER_HOME holding the team dagster.yaml, and the variables that point it at
    `database_url`: what every Dagster process of a team deployment gets."""
    import shutil

    from lifecycle_assets.mlflow_server import sqlalchemy_url

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(TEAM_DAGSTER_YAML, folder / "dagster.yaml")
    return {"DAGSTER_HOME": str(folder), "DAGSTER_PG_URL": sqlalchemy_url(database_url)}


def start_celery_worker(
    folder: Path, env: dict[str, str], broker: str, queue: str
) -> subprocess.Popen:
    """A dagster-celery worker in its own process group, listening on `queue` only (so that
    workers of other test sessions on the same broker never take this test's steps)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "celery.yaml"
    executor = {"broker": broker, "backend": "rpc://"}
    executor["config_source"] = {"task_default_queue": queue}
    config_file.write_text(yaml.safe_dump({"execution": {"config": executor}}))
    worker = Path(sys.executable).with_name("dagster-celery")
    command = [str(worker), "worker", "start", "-A", "dagster_celery.app"]
    command += ["-y", str(config_file), "-q", queue, "--loglevel", "INFO"]
    log = (folder / "worker.log").open("w")
    return subprocess.Popen(
        command, cwd=folder, env=env, stdout=log, stderr=log, start_new_session=True
    )


def wait_for_worker(worker: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    """Until Celery logs `ready.`; a worker that dies first fails the test instead of leaving
    the run waiting for steps nobody takes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited ({worker.returncode}):\n{text[-3000:]}")
        if " ready." in text:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Celery worker was not ready within {timeout:.0f} s")
