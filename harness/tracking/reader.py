"""The local SQLite store, read with the standard library's sqlite3: the commands that only
read (compare, report, select's pick, ui's links, a run-ablation that finds its run done)
answer without importing MLflow, whose import alone takes one to two seconds here.

`StoreReader` keeps protocol.RunStore over the tables MLflow's own SQLAlchemy store reads,
with the same meaning: active runs and experiments only, newest first, a metric's latest
value per run, NaN where MLflow stored one. It reads MLflow's private schema, so it reads
only the schema revisions its tests cover (`SUPPORTED_REVISIONS`, one store file for each
under tests/fixtures/stores/); `open_reader` leaves any other file to MLflow, or, for a
command that only reads, refuses it in one line. The file is opened read-only: reading
never writes to the store.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.errors import HarnessError
from harness.tracking.protocol import MAX_RUNS, Statuses, status_list
from harness.tracking.uri import default_tracking_uri, sqlite_path

# MLflow's alembic revision of each store schema this reader has a test store for, and the
# MLflow releases that write it (pyproject.toml bounds mlflow to them).
SUPPORTED_REVISIONS = {"dc11669786a5": "MLflow 3.17"}
# The columns read, per table (checked too: a revision is a promise, not a proof).
COLUMNS = {
    "experiments": {"experiment_id", "name", "lifecycle_stage", "artifact_location", "creation_time"},
    "runs": {
        "run_uuid",
        "name",
        "status",
        "start_time",
        "end_time",
        "experiment_id",
        "artifact_uri",
        "lifecycle_stage",
    },
    "tags": {"key", "value", "run_uuid"},
    "params": {"key", "value", "run_uuid"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
}
READ_WAIT_SECONDS = 15  # a writer holding the whole file longer than this is stuck, not busy
CHUNK = 500  # run ids per IN (...) query: under SQLite's limit on bound variables
RUN_COLUMNS = "run_uuid, name, status, start_time, end_time, experiment_id, artifact_uri"


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    lifecycle_stage: str
    artifact_location: Optional[str]


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    run_name: str
    status: str
    start_time: Optional[int]
    end_time: Optional[int]
    experiment_id: str
    artifact_uri: Optional[str]


@dataclass
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """A run as MLflow's `Run` presents it to the harness: `.info` and `.data`."""

    info: RunInfo
    data: RunData


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    timestamp: int
    step: int


class UnknownStore(Exception):
    """A file the reader cannot read; the message says why (it becomes a HarnessError in
    strict mode)."""


def open_reader(root: Path, tracking_uri: Optional[str], strict: bool = False) -> Optional[StoreReader]:
    """A reader of the project's SQLite store, or None where MLflow must read it (not SQLite,
    no such file, a schema revision this reader has no test store for). A file that is not
    an MLflow store of a supported revision, or that SQLite cannot read, is None too, or with
    `strict` (the commands that only read: MLflow would create or migrate it, a write) a
    HarnessError naming the file."""
    uri = tracking_uri or default_tracking_uri(root)
    path = sqlite_path(uri)
    if not path or not Path(path).is_file():
        return None
    connection = None
    try:
        connection = _connect(Path(path))
        check_schema(connection)
    except (sqlite3.Error, UnknownStore) as exc:
        if connection is not None:
            connection.close()
        if strict:
            raise HarnessError(f"tracking store {path}: {exc}") from None
        return None
    return StoreReader(Path(root), uri, connection)


def _connect(path: Path) -> sqlite3.Connection:
    """Read-only. In a folder this process cannot write, SQLite cannot make the shared-memory
    file a WAL store needs, so the file is read as immutable (nothing here can change it)."""
    location = path.resolve().as_uri()
    connection = sqlite3.connect(f"{location}?mode=ro", uri=True, timeout=READ_WAIT_SECONDS)
    try:
        connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return connection
    except sqlite3.OperationalError:
        connection.close()
        if os.access(path.parent, os.W_OK):
            raise
    return sqlite3.connect(f"{location}?mode=ro&immutable=1", uri=True, timeout=READ_WAIT_SECONDS)


def schema_revision(connection: sqlite3.Connection) -> Optional[str]:
    """MLflow's alembic revision of the store, or None where there is no alembic_version."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "alembic_version" not in tables:
        return None
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else None


def check_schema(connection: sqlite3.Connection) -> None:
    """Raise UnknownStore unless this is an MLflow store of a supported revision."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        raise UnknownStore("empty, no runs yet")
    revision = schema_revision(connection)
    if revision is None:
        raise UnknownStore("not an MLflow store (no alembic_version table)")
    if revision not in SUPPORTED_REVISIONS:
        known = ", ".join(f"{r} ({who})" for r, who in SUPPORTED_REVISIONS.items())
        raise UnknownStore(
            f"schema revision {revision} is not one this harness reads ({known}); "
            "open it with the MLflow that wrote it, or upgrade it with `mlflow db upgrade`"
        )
    for table, wanted in COLUMNS.items():
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if not wanted <= present:
            raise UnknownStore(f"not an MLflow store this harness reads (table {table} lacks a column it reads)")


class StoreReader:
    """Read-only access to a local MLflow SQLite store (protocol.RunStore)."""

    local = True

    def __init__(self, root: Path, uri: str, connection: sqlite3.Connection):
        self.root, self.uri, self._connection = root, uri, connection

    def _rows(self, query: str, values=()) -> list[tuple]:
        """All rows of a query; a store SQLite cannot read (damaged, locked) is a HarnessError."""
        try:
            return self._connection.execute(query, values).fetchall()
        except sqlite3.Error as exc:
            raise HarnessError(f"tracking store {sqlite_path(self.uri)}: {exc}") from None

    def experiments(self) -> list[Experiment]:
        """The active experiments, newest first, as MLflow's search_experiments lists them."""
        rows = self._rows(
            "SELECT experiment_id, name, lifecycle_stage, artifact_location FROM experiments "
            "WHERE lifecycle_stage = 'active' ORDER BY creation_time DESC, experiment_id"
        )
        return [Experiment(str(i), name, stage, location) for i, name, stage, location in rows]

    def experiment_id(self, name: str) -> Optional[str]:
        """The id of the experiment named `name` (a deleted one too), or None."""
        rows = self._rows("SELECT experiment_id FROM experiments WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def experiment_tags(self, experiment_id: str) -> dict[str, str]:
        """An experiment's tags (its saved views among them)."""
        return dict(self._rows("SELECT key, value FROM experiment_tags WHERE experiment_id = ?", (experiment_id,)))

    def runs(
        self,
        experiment_id: str,
        *,
        status: Statuses = None,
        tags: Optional[Mapping[str, str]] = None,
        limit: int = MAX_RUNS,
    ) -> list[Run]:
        """The experiment's active runs with this status (or one of these) and all these tag
        values, newest first, at most `limit`."""
        where = ["lifecycle_stage = 'active'", "experiment_id = ?"]
        values: list = [int(experiment_id)]
        statuses = status_list(status)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            values += statuses
        for key, value in (tags or {}).items():
            where.append("run_uuid IN (SELECT run_uuid FROM tags WHERE key = ? AND value = ?)")
            values += [key, value]
        query = f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)} ORDER BY start_time DESC, run_uuid LIMIT ?"
        return self._complete(self._rows(query, [*values, int(limit)]))

    def get_run(self, run_id: str) -> Run:
        """One run by id, deleted or not; KeyError if there is none."""
        rows = self._rows(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_uuid = ?", (run_id,))
        if not rows:
            raise KeyError(f"run {run_id} not found")
        return self._complete(rows)[0]

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every logged value of one metric, by step (as MLflow orders them)."""
        rows = self._rows(
            "SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ? AND key = ? "
            "ORDER BY step, timestamp, value",
            (run_id, key),
        )
        return [MetricPoint(k, _value(v, nan), t, s) for k, v, t, s, nan in rows]

    def download_artifact(self, run_id: str, path: str, destination: Path) -> Path:
        """Copy one artifact (file or folder) of the run into `destination`; its local path.
        Artifacts kept elsewhere than on this machine are fetched by MLflow."""
        artifact_uri = self.get_run(run_id).info.artifact_uri or ""
        if not artifact_uri.startswith("file:"):
            from mlflow.artifacts import download_artifacts

            fetched = download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=str(destination), tracking_uri=self.uri
            )
            return Path(fetched)
        source = Path(urllib.request.url2pathname(urllib.parse.urlparse(artifact_uri).path)) / path
        target = Path(destination) / path
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        else:
            raise FileNotFoundError(f"run {run_id} has no artifact {path}")
        return target

    def close(self) -> None:
        self._connection.close()

    def _complete(self, rows: list[tuple]) -> list[Run]:
        """Runs from their `runs` rows, with tags, params and latest metrics filled in."""
        runs = {
            row[0]: Run(RunInfo(row[0], row[1] or "", row[2], row[3], row[4], str(row[5]), row[6]), RunData())
            for row in rows
        }
        for chunk in _chunks(list(runs)):
            marks = ",".join("?" * len(chunk))
            for run_id, key, value in self._rows(
                f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks})", chunk
            ):
                runs[run_id].data.tags[key] = value
            for run_id, key, value in self._rows(
                f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})", chunk
            ):
                runs[run_id].data.params[key] = value
            for run_id, key, value, nan in self._rows(
                f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({marks})", chunk
            ):
                runs[run_id].data.metrics[key] = _value(value, nan)
        return list(runs.values())


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _value(value: float, is_nan) -> float:
    return float("nan") if is_nan else float(value)
