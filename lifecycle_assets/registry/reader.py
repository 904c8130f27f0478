"""Read the registry and the tracking store without writing: the one door for every read.

Why not always MlflowClient: importing MLflow costs 1.5-2.3 s per process and opening its
tracking store (engine, table checks, alembic schema verification) another 2.3-2.6 s, while
`status`, `trace` and `lineage` need a few rows. Why not a local index written at registration
and promotion: that would be a second copy of the registry that a crash or a change made in the
MLflow UI could leave behind. So the MLflow store stays the one source of truth and, when it is
a SQLite file, this reads the very rows MLflow reads with `sqlite3` in read-only mode
(`mode=ro`: no write, no migration). Any other store (the team's MLflow server), or a file
whose schema lacks the expected tables, is read through MlflowClient: the same answers, by the
slower road. Both backends answer with the same types (`ModelRef`, `RunRecord`).

Artifacts are located, not downloaded: a version's model folder and a run's artifact root are
URIs, and when they are files (or objects `storage` reaches) a caller hashes them in place.
"""

from __future__ import annotations

import math
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from lifecycle_assets.config import Settings
from lifecycle_assets.registry.mlflow_reader import MlflowReader
from lifecycle_assets.registry.read_models import ModelState, RegistryReader, RunRecord
from lifecycle_assets.registry.refs import ModelRef

# MLflow marks a deleted version this way until it is purged.
_DELETED = "Deleted_Internal"
_WORKSPACE = "default"
_REACHABLE = ("file:", "s3://", "s3a://")  # artifact URIs `storage` opens in place


class SchemaMismatch(RuntimeError):
    """The SQLite file does not hold the tables this reader knows."""


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///...` URI, None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(urllib.parse.unquote(uri[len("sqlite:///") :]).split("?", 1)[0])


def local_or_stored(uri: str | None) -> str | None:
    """The location `storage.path` opens for an artifact URI; None when only MLflow can reach
    it (its proxied `mlflow-artifacts:` store, a registry URI)."""
    if not uri or not uri.startswith(_REACHABLE):
        return None
    if uri.startswith("file:"):
        return urllib.parse.unquote(urllib.parse.urlparse(uri).path)
    return uri


class SqliteReader:
    """The registry and tracking tables of MLflow's SQLite file, read-only."""

    _NEEDED = frozenset(
        {"model_versions", "model_version_tags", "registered_models", "registered_model_aliases",
         "registered_model_tags", "runs", "tags", "params", "latest_metrics", "inputs",
         "input_tags", "datasets"}
    )  # fmt: skip

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        tables = {row[0] for row in self.connection.execute("select name from sqlite_master")}
        if not tables >= self._NEEDED:
            raise SchemaMismatch(f"{path} lacks {sorted(self._NEEDED - tables)}")

    def schema_revision(self) -> str | None:
        """The alembic revision MLflow recorded for the file."""
        try:
            row = self.connection.execute("select version_num from alembic_version").fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else row[0]

    def ref_of(self, row: tuple) -> ModelRef:
        name, number, run_id, source, created = row
        where = (_WORKSPACE, name, number)
        tags = self.connection.execute(
            'select "key", value from model_version_tags '
            "where workspace = ? and name = ? and version = ?",
            where,
        ).fetchall()
        aliases = self.connection.execute(
            "select alias from registered_model_aliases "
            "where workspace = ? and name = ? and version = ? order by alias",
            where,
        ).fetchall()
        return ModelRef(
            name=name,
            version=str(number),
            run_id=run_id or "",
            source=source or "",
            tags={k: v if v is not None else "" for k, v in tags},
            aliases=tuple(alias for (alias,) in aliases),
            created_ms=created,
        )

    _VERSION = (
        "select name, version, run_id, source, creation_time from model_versions "
        "where workspace = ? and name = ? and current_stage != ?"
    )

    def version(self, name: str, version: str) -> ModelRef | None:
        if not str(version).isdigit():
            return None
        row = self.connection.execute(
            self._VERSION + " and version = ?", (_WORKSPACE, name, _DELETED, int(version))
        ).fetchone()
        return None if row is None else self.ref_of(row)

    def versions(self, name: str) -> list[ModelRef]:
        rows = self.connection.execute(
            self._VERSION + " order by version", (_WORKSPACE, name, _DELETED)
        ).fetchall()
        return [self.ref_of(row) for row in rows]

    def resolve(self, name: str, alias_or_version: str) -> ModelRef | None:
        """A version number or an alias; None when the alias is not set."""
        if alias_or_version.isdigit():
            return self.version(name, alias_or_version)
        row = self.connection.execute(
            "select version from registered_model_aliases "
            "where workspace = ? and name = ? and alias = ?",
            (_WORKSPACE, name, alias_or_version),
        ).fetchone()
        return None if row is None else self.version(name, str(row[0]))

    def model_names(self) -> list[str]:
        """Every registered model's name, sorted."""
        rows = self.connection.execute(
            "select name from registered_models where workspace = ? order by name", (_WORKSPACE,)
        ).fetchall()
        return [name for (name,) in rows]

    def aliases(self, name: str) -> dict[str, str] | None:
        """alias -> version of a registered model; None when there is no such model."""
        state = self.model_state(name)
        return None if state is None else state.aliases

    def model_state(self, name: str) -> ModelState | None:
        """Aliases and tags in one read transaction (one snapshot of the file); None when there
        is no such model."""
        where = (_WORKSPACE, name)
        with self.connection:  # the transaction `begin` opens ends with the block
            self.connection.execute("begin")
            known = self.connection.execute(
                "select 1 from registered_models where workspace = ? and name = ?", where
            ).fetchone()
            if known is None:
                return None
            aliases = self.connection.execute(
                "select alias, version from registered_model_aliases "
                "where workspace = ? and name = ?",
                where,
            ).fetchall()
            tags = self.connection.execute(
                'select "key", value from registered_model_tags where workspace = ? and name = ?',
                where,
            ).fetchall()
        return ModelState(
            aliases={alias: str(version) for alias, version in aliases},
            tags={key: value for key, value in tags},
        )

    def model_location(self, ref: ModelRef) -> str | None:
        """The URI MLflow downloads `models:/<name>/<version>` from."""
        row = self.connection.execute(
            "select storage_location, source from model_versions "
            "where workspace = ? and name = ? and version = ?",
            (_WORKSPACE, ref.name, int(ref.version)),
        ).fetchone()
        return None if row is None else (row[0] or row[1])

    def _pairs(self, sql: str, run_id: str) -> dict[str, Any]:
        return dict(self.connection.execute(sql, (run_id,)).fetchall())

    def _run(self, row: tuple) -> RunRecord:
        run_id = row[0]
        metrics = {
            key: math.nan if is_nan else float(value)
            for key, value, is_nan in self.connection.execute(
                'select "key", value, is_nan from latest_metrics where run_uuid = ?', (run_id,)
            )
        }
        datasets: dict[str, dict[str, str]] = {}
        for input_uuid, dataset in self.connection.execute(
            "select i.input_uuid, d.name from inputs i join datasets d "
            "on d.dataset_uuid = i.source_id where i.source_type = 'DATASET' "
            "and i.destination_type = 'RUN' and i.destination_id = ?",
            (run_id,),
        ):
            datasets[dataset] = self._pairs(
                "select name, value from input_tags where input_uuid = ?", input_uuid
            )
        return RunRecord(
            run_id=run_id,
            status=row[1],
            start_time=row[2],
            end_time=row[3],
            experiment_id=str(row[4]),
            artifact_uri=row[5] or "",
            tags=self._pairs('select "key", value from tags where run_uuid = ?', run_id),
            params=self._pairs('select "key", value from params where run_uuid = ?', run_id),
            metrics=metrics,
            datasets=datasets,
        )

    _RUN = "select run_uuid, status, start_time, end_time, experiment_id, artifact_uri from runs"

    def run(self, run_id: str) -> RunRecord | None:
        row = self.connection.execute(self._RUN + " where run_uuid = ?", (run_id,)).fetchone()
        return None if row is None else self._run(row)

    def running_runs(self) -> list[RunRecord]:
        """Active runs still RUNNING (what a killed training step leaves behind)."""
        rows = self.connection.execute(
            self._RUN + " where status = 'RUNNING' and lifecycle_stage = 'active'"
        ).fetchall()
        return [self._run(row) for row in rows]


class _Empty:
    """No store file yet: nothing is registered and no run exists."""

    def version(self, name: str, version: str) -> None:
        return None

    def resolve(self, name: str, alias_or_version: str) -> None:
        return None

    def aliases(self, name: str) -> None:
        return None

    def model_state(self, name: str) -> None:
        return None

    def versions(self, name: str) -> list[ModelRef]:
        return []

    def run(self, run_id: str) -> None:
        return None

    def running_runs(self) -> list[RunRecord]:
        return []

    def model_location(self, ref: ModelRef) -> None:
        return None

    def model_names(self) -> list[str]:
        return []


def sqlite_reader(uri: str) -> SqliteReader | _Empty | None:
    """The direct reader of a SQLite store URI; None when it must go through MLflow."""
    path = sqlite_path(uri)
    if path is None:
        return None
    if not path.exists():
        return _Empty()
    try:
        return SqliteReader(path)
    except (sqlite3.Error, SchemaMismatch):
        return None


def reader_for(settings: Settings, client: Any = None) -> RegistryReader:
    """The registry reader for the settings' store: the SQLite file directly when it is one,
    else MlflowClient (`client` when the caller already holds one)."""
    direct = sqlite_reader(settings.mlflow_tracking_uri)
    if direct is not None:
        return direct
    if client is None:
        from lifecycle_assets.registry.tracking import configure_mlflow

        client = configure_mlflow(settings)
    return MlflowReader(client)


def reader_of(client: Any) -> RegistryReader:
    """The reader that goes with an MLflow client: the one it carries (`registry_client`'s
    client reads the SQLite file directly), else the client itself."""
    return getattr(client, "reader", None) or MlflowReader(client)
