"""Fail fast and say why: a fatal start-up error ends `bentoml serve` with one line and exit 78.

BentoML's supervisor (a circus arbiter in the `bentoml serve` process) restarts a worker that
dies, forever, while it keeps the port bound: a service that cannot start would hang its clients
instead of failing. So start-up errors are handled on both sides of that supervisor:

- in the supervisor, when `bentoml serve` imports the service module: the configuration is
  checked before any worker starts (the registry exists, is an MLflow store, answers within a
  bounded wait; the named models are registered). A problem prints one line and exits 78
  (`EX_CONFIG`); no new empty SQLite registry is ever created by a mistyped path;
- in the worker: an error while loading the models (no version verifies, say) is written to a
  file the supervisor watches; the supervisor prints its one line and exits 78, which drops the
  port, and the worker exits too.

The worker also watches its parent: if the supervisor is killed (kill -9), the worker exits
instead of holding the port for ever.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.serving import metrics_dir
from lifecycle_assets.serving.model_env import (
    ENV_MODEL_NAMES,
    ENV_MODEL_SOURCE,
    ModelSourceError,
    explicit_names,
    source_mode,
)
from lifecycle_assets.settings import SettingsRefused
from lifecycle_assets.spec import configured_specs

logger = logging.getLogger(__name__)

# sysexits.h EX_CONFIG: the service is misconfigured, restarting it will not help.
EXIT_CONFIG = 78
# Set by the supervisor for its workers: where a worker reports a fatal start-up error.
ENV_FATAL_FILE = "LIFECYCLE_SERVE_FATAL_FILE"
ENV_REGISTRY_WAIT = "LIFECYCLE_REGISTRY_WAIT_SECONDS"
PARENT_CHECK_SECONDS = 0.5
PREFIX = "lifecycle serve: "


class FatalConfigError(ModelSourceError):
    """The configuration can never serve; the message is the one line the operator reads."""


def one_line(message: str) -> str:
    return PREFIX + " ".join(str(message).split())


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (None for an in-memory database)."""
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


def _check_sqlite(uri: str) -> None:
    path = _sqlite_path(uri)
    if path is None:
        raise FatalConfigError(f"the registry {uri} is in memory: nothing is registered there")
    if not path.is_file():
        raise FatalConfigError(
            f"no registry at {path} (MLFLOW_TRACKING_URI={uri}): fix the path, or train and "
            f"promote a model first; the service never creates an empty registry"
        )
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as error:
        raise FatalConfigError(f"the registry {path} cannot be read: {error}") from error
    if "registered_models" not in tables:
        raise FatalConfigError(f"{path} is not an MLflow registry (empty or corrupt)")


def _check_server(uri: str, wait_seconds: float) -> None:
    """Wait up to `wait_seconds` for the tracking server's health endpoint."""
    deadline = time.monotonic() + wait_seconds
    url = uri.rstrip("/") + "/health"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                problem = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as error:
            problem = str(getattr(error, "reason", error))
        if time.monotonic() >= deadline:
            raise FatalConfigError(
                f"the tracking server {uri} did not answer within {wait_seconds:.0f} s "
                f"({problem}); start it or fix MLFLOW_TRACKING_URI"
            )
        time.sleep(1.0)


def check_registry(settings: Settings, wait_seconds: float) -> None:
    """Raise FatalConfigError unless the registry exists and answers."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:"):
        _check_sqlite(uri)
    elif uri.startswith(("http://", "https://")):
        _check_server(uri, wait_seconds)
    elif uri.startswith("file:") or "://" not in uri:
        path = Path(uri.removeprefix("file://").removeprefix("file:"))
        if not path.is_dir():
            raise FatalConfigError(f"no registry folder at {path} (MLFLOW_TRACKING_URI={uri})")


def check_names(settings: Settings, names: list[str]) -> None:
    """Every explicitly named model must be registered (a typo is not 'no champion yet').

    Read through `registry/reader.py` (a SQLite registry read-only, no MLflow import in the
    supervisor); MLflow is asked for the list of registered models only to name them in the
    error.
    """
    from lifecycle_assets.registry.reader import reader_for

    try:
        unknown = [name for name in names if reader_for(settings).aliases(name) is None]
    except Exception as error:  # MlflowException from a server, sqlite3.Error from a file
        raise FatalConfigError(f"the registry cannot be read: {error}") from error
    if not unknown:
        return
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    registered = sorted(m.name for m in client.search_registered_models(max_results=50))
    raise FatalConfigError(
        f"unknown model {unknown[0]!r} in {ENV_MODEL_NAMES}: it is not registered; "
        f"registered models: {registered}"
    )


def preflight(env: Mapping[str, str]) -> None:
    """The checks that need no model loaded; raises FatalConfigError naming the cause."""
    mode = source_mode(env)
    if mode not in ("registry", "bento"):
        raise FatalConfigError(f"{ENV_MODEL_SOURCE} must be 'registry' or 'bento', not {mode!r}")
    if mode != "registry":
        return  # a Bento serves what it carries: no registry, no specs to read
    try:
        configured_specs(dict(env))
    except (OSError, ValueError) as error:
        raise FatalConfigError(f"the project's specs cannot be read: {error}") from error
    try:
        settings = Settings.from_env(dict(env))
    except SettingsRefused as error:
        raise FatalConfigError(str(error)) from None
    wait = float(env.get(ENV_REGISTRY_WAIT) or config.REGISTRY_WAIT_SECONDS)
    check_registry(settings, wait)
    names = explicit_names(env)
    if names:
        check_names(settings, names)


def exit_fatal(message: str) -> None:
    """Print the one line and end this process now (no atexit, no supervisor restart)."""
    sys.stderr.write(one_line(message) + "\n")
    sys.stderr.flush()
    os._exit(EXIT_CONFIG)


def is_serve_supervisor(argv: list[str] | None = None) -> bool:
    """True in the `bentoml serve` process itself (not in its workers, a build or a test)."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] != "serve":
        return False
    program = Path(argv[0])
    return program.name == "bentoml" or "bentoml" in program.parts


def _watch_fatal_file(path: Path) -> None:
    while not path.exists():
        time.sleep(0.1)
    time.sleep(0.05)  # the worker writes the file whole (rename), this only orders the output
    exit_fatal(path.read_text(errors="replace").strip() or "a worker failed to start")


def supervise() -> None:
    """Run in the supervisor at import: check the configuration, then watch for worker reports."""
    if not is_serve_supervisor():
        return
    metrics_dir.use_own_folder()
    try:
        preflight(os.environ)
    except FatalConfigError as error:
        exit_fatal(str(error))
    fatal_dir = Path(tempfile.mkdtemp(prefix="lifecycle-serve-"))
    path = fatal_dir / "fatal"
    # Workers are spawned later with a copy of this environment.
    os.environ[ENV_FATAL_FILE] = str(path)
    threading.Thread(target=_watch_fatal_file, args=(path,), name="fatal", daemon=True).start()


def report_fatal(message: str) -> None:
    """From a worker: hand the one-line cause to the supervisor, which exits 78; then exit."""
    line = " ".join(str(message).split())
    target = os.environ.get(ENV_FATAL_FILE)
    if target:
        tmp = Path(f"{target}.{os.getpid()}")
        tmp.write_text(line)
        tmp.replace(target)
    else:
        # Not under our supervisor hook (a programmatic serve): stop the parent ourselves.
        sys.stderr.write(one_line(line) + "\n")
        sys.stderr.flush()
        os.kill(os.getppid(), signal.SIGTERM)
    os._exit(EXIT_CONFIG)


def watch_parent() -> None:
    """From a worker: exit as soon as the supervisor is gone (it was killed, say)."""
    parent = os.getppid()

    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        logger.error("the supervisor (pid %d) is gone; exiting", parent)
        os._exit(1)

    threading.Thread(target=loop, name="parent-watchdog", daemon=True).start()
