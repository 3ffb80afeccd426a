"""The one interface of a store that the harness reads: `RunStore`.

Two implementations keep it: `store.Store` (MLflow's client: any tracking URI, and the one
that writes) and `reader.StoreReader` (the local SQLite file read with sqlite3, so the
commands that only read answer without importing MLflow). Queries are structured (a
status, tag equalities), never filter strings, so each implementation builds its own
query and the same tests run against both (tests/tracking/test_store_contract.py).

The runs they return look like MLflow's `Run` (`.info`, `.data`); the protocols below name
the attributes the harness reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Protocol, Union

Statuses = Union[str, Sequence[str], None]  # one run status, several, or any
MAX_RUNS = 5000  # runs one query returns at most: a study of this harness holds a few hundred


class Experiment(Protocol):
    experiment_id: str
    name: str


class RunInfo(Protocol):
    run_id: str
    run_name: str
    status: str  # RUNNING, SCHEDULED, FINISHED, FAILED, KILLED
    start_time: Optional[int]  # milliseconds since the epoch
    end_time: Optional[int]
    experiment_id: str
    artifact_uri: Optional[str]


class RunData(Protocol):
    metrics: dict[str, float]  # each metric's latest value
    params: dict[str, str]
    tags: dict[str, str]


class Run(Protocol):
    info: RunInfo
    data: RunData


class MetricPoint(Protocol):
    key: str
    value: float
    timestamp: int
    step: int


class RunStore(Protocol):
    """What the harness reads from a store. Active experiments and runs only (deleted ones
    are invisible), newest first; a metric's latest value per run; NaN where one was logged."""

    uri: str
    local: bool  # a SQLite file on this machine (artifacts under mlruns/)

    def experiments(self) -> list[Experiment]:
        """The active experiments, newest first."""
        ...

    def experiment_id(self, name: str) -> Optional[str]:
        """The id of the experiment named `name` (a deleted one too), or None."""
        ...

    def experiment_tags(self, experiment_id: str) -> dict[str, str]:
        """An experiment's tags (its saved views among them)."""
        ...

    def runs(
        self, experiment_id: str, *, status: Statuses = None, tags: Optional[Mapping[str, str]] = None, limit: int = ...
    ) -> list[Run]:
        """The experiment's active runs with this status (or one of these) and all these tag
        values, newest first, at most `limit`."""
        ...

    def get_run(self, run_id: str) -> Run:
        """One run by id, deleted or not; KeyError if there is none."""
        ...

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every logged value of one metric of a run, by step."""
        ...

    def download_artifact(self, run_id: str, path: str, destination: Path) -> Path:
        """Copy one artifact (a file or a folder) of a run into `destination`; its local path.
        FileNotFoundError if the run has no such artifact."""
        ...


def status_list(status: Statuses) -> list[str]:
    """The statuses a query asks for, as a list ([] for any)."""
    if status is None:
        return []
    return [status] if isinstance(status, str) else list(status)
