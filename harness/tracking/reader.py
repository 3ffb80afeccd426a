"""The local SQLite store, read with the standard library's sqlite3: the commands that only
read (compare, report, select's pick, ui's links, a run-ablation that finds its run done)
answer without importing MLflow, whose import alone takes one to two seconds here.

It offers the part of `tracking.Store` those commands use (runs by status and tags, a run,
a metric's history, an artifact of a local artifact root) over the tables MLflow's own
SQLAlchemy store reads, with the same meaning: active runs and experiments only, newest
first, a metric's latest value per run, NaN where MLflow stored one. `open_reader` returns
None for anything else (a tracking server, a schema it does not know), and the caller uses
MLflow itself. The file is opened read-only: reading never writes to the store.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.errors import HarnessError
from harness.tracking.uri import default_tracking_uri, sqlite_path

# The columns read, per table: a store without them is read through MLflow instead.
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
# The filters the harness writes: status (= or !=) and tag equality, joined by "and".
CLAUSE = re.compile(
    r"\s*(?:attributes\.status\s*(?P<op>!?=)|tags\.`(?P<tag>[^`]+)`\s*=)\s*'(?P<value>[^']*)'\s*(?:\band\b|$)",
    re.IGNORECASE,
)
NEWEST_FIRST = (None, [], ["attributes.start_time DESC"])


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


def open_reader(root: Path, tracking_uri: Optional[str], strict: bool = False) -> Optional[StoreReader]:
    """A reader of the project's SQLite store, or None where MLflow must read it (not SQLite,
    no such file). A file that is not an MLflow store this reader knows, or that SQLite cannot
    read, is None too, or with `strict` (the commands that only read: MLflow would migrate it,
    a write) a HarnessError naming the file."""
    uri = tracking_uri or default_tracking_uri(root)
    path = sqlite_path(uri)
    if not path or not Path(path).is_file():
        return None
    try:
        connection = _connect(Path(path))
        problem = _unknown_schema(connection)
    except sqlite3.Error as exc:
        connection, problem = None, str(exc)
    if problem is None:
        return StoreReader(Path(root), uri, connection)
    if connection is not None:
        connection.close()
    if strict:
        raise HarnessError(f"tracking store {path}: {problem}")
    return None


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


def _unknown_schema(connection: sqlite3.Connection) -> Optional[str]:
    """Why this is not an MLflow store the reader knows, or None."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return "empty, no runs yet"
    for table, wanted in COLUMNS.items():
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if not wanted <= present:
            missing = ", ".join(sorted(wanted - present))
            return (
                f"not an MLflow store this harness reads (table {table} lacks {missing}); "
                "a store of another MLflow version is upgraded with `mlflow db upgrade`"
            )
    return None


class StoreReader:
    """Read-only access to a local MLflow SQLite store; `client` answers the few MlflowClient
    calls the reading commands make (get_run, get_metric_history, download_artifacts)."""

    local = True

    def __init__(self, root: Path, uri: str, connection: sqlite3.Connection):
        self.root, self.uri, self._connection = root, uri, connection
        self.client = self

    def _rows(self, query: str, values=()) -> list[tuple]:
        """All rows of a query; a store SQLite cannot read (damaged, locked) is a HarnessError."""
        try:
            return self._connection.execute(query, values).fetchall()
        except sqlite3.Error as exc:
            raise HarnessError(f"tracking store {sqlite_path(self.uri)}: {exc}") from None

    # ----------------------------------------------------------------- experiments

    def experiments(self) -> list[Experiment]:
        """The active experiments, newest first, as MLflow's search_experiments lists them."""
        rows = self._rows(
            "SELECT experiment_id, name, lifecycle_stage, artifact_location FROM experiments "
            "WHERE lifecycle_stage = 'active' ORDER BY creation_time DESC, experiment_id"
        )
        return [Experiment(str(i), name, stage, location) for i, name, stage, location in rows]

    def experiment_id(self, name: str, create: bool = False) -> Optional[str]:
        """The id of experiment `name` (deleted ones too), or None; a reader never creates one."""
        if create:
            raise ValueError("a StoreReader cannot create experiments")
        rows = self._rows("SELECT experiment_id FROM experiments WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    # ----------------------------------------------------------------- runs

    def runs(self, experiment_ids: list[str], filter_string: str = "", order_by=None, max_results: int = 5000):
        """The active runs of these experiments matching `filter_string` (the harness's own
        filters: status and tag equality joined by "and"), newest first."""
        if order_by not in NEWEST_FIRST:
            raise ValueError(f"StoreReader orders runs newest first only, not by {order_by}")
        where, values = ["lifecycle_stage = 'active'"], []
        where.append(f"experiment_id IN ({','.join('?' * len(experiment_ids))})")
        values += [int(i) for i in experiment_ids]
        for op, tag, value in _clauses(filter_string):
            if tag is None:
                where.append(f"status {op} ?")
            else:
                where.append("run_uuid IN (SELECT run_uuid FROM tags WHERE key = ? AND value = ?)")
                values.append(tag)
            values.append(value)
        query = (
            "SELECT run_uuid, name, status, start_time, end_time, experiment_id, artifact_uri FROM runs "
            f"WHERE {' AND '.join(where)} ORDER BY start_time DESC, run_uuid LIMIT ?"
        )
        rows = self._rows(query, [*values, int(max_results)])
        return self._complete(rows)

    def find_finished(self, experiment_id: str, tags: dict[str, str], kinds: tuple[str, ...] = ()) -> Optional[Run]:
        """The latest FINISHED run carrying all these tags (and one of `kinds`), or None."""
        clauses = ["attributes.status = 'FINISHED'", *(f"tags.`{k}` = '{v}'" for k, v in tags.items())]
        runs = [r for r in self.runs([experiment_id], " and ".join(clauses), max_results=50)]
        runs = [r for r in runs if not kinds or r.data.tags.get("harness.kind") in kinds]
        return runs[0] if runs else None

    def get_run(self, run_id: str) -> Run:
        """One run by id (deleted ones too, as MlflowClient.get_run); KeyError if there is none."""
        rows = self._rows(
            "SELECT run_uuid, name, status, start_time, end_time, experiment_id, artifact_uri FROM runs "
            "WHERE run_uuid = ?",
            (run_id,),
        )
        if not rows:
            raise KeyError(f"run {run_id} not found")
        return self._complete(rows)[0]

    def get_metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every logged value of one metric, by step (as MLflow orders them)."""
        rows = self._rows(
            "SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ? AND key = ? "
            "ORDER BY step, timestamp, value",
            (run_id, key),
        )
        return [MetricPoint(k, _value(v, nan), t, s) for k, v, t, s, nan in rows]

    def download_artifacts(self, run_id: str, path: str, dst_path: str) -> str:
        """Copy one artifact (file or folder) of the run into dst_path; its local path."""
        artifact_uri = self.get_run(run_id).info.artifact_uri or ""
        if not artifact_uri.startswith("file:"):
            from mlflow.artifacts import download_artifacts

            return download_artifacts(run_id=run_id, artifact_path=path, dst_path=dst_path, tracking_uri=self.uri)
        source = Path(urllib.request.url2pathname(urllib.parse.urlparse(artifact_uri).path)) / path
        target = Path(dst_path) / path
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        else:
            raise FileNotFoundError(f"run {run_id} has no artifact {path}")
        return str(target)

    def close(self) -> None:
        self._connection.close()

    # ----------------------------------------------------------------- internals

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


def _clauses(filter_string: str) -> Iterator[tuple[str, Optional[str], str]]:
    """(operator, tag or None for status, value) of each clause of a harness filter."""
    position, text = 0, filter_string.strip()
    while position < len(text):
        match = CLAUSE.match(text, position)
        if match is None:
            raise ValueError(f"StoreReader cannot read the filter {filter_string!r}")
        yield (match["op"] or "="), match["tag"], match["value"]
        position = match.end()


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _value(value: float, is_nan) -> float:
    return float("nan") if is_nan else float(value)
