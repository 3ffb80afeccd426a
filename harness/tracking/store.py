"""MLflow: the store, experiments per dataset, the run lifecycle and batched logging.

A run never stays RUNNING: an exception ends it FAILED, Ctrl-C or SIGTERM KILLED, each with
the reason in the `harness.reason` tag; a second signal ends it KILLED from the signal
guard before exiting; a run whose process was killed outright (kill -9) is marked FAILED by
the next command that writes (`Store.reap_orphans`). Opening the store writes nothing.
Imports no Keras, so the commands that only read stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from harness import paths
from harness.errors import HarnessError, describe, first_line
from harness.interrupts import GUARD
from harness.locks import process_alive
from harness.tracking.names import TAG, Tag
from harness.tracking.uri import check_uri, default_tracking_uri, require_store, sqlite_path  # noqa: F401 - re-exported

PARAMS_PER_CALL = 100  # MLflow's log_batch limit for params
METRICS_PER_CALL = 1000  # and for metrics
# between system-metrics samples: a few per epoch of the report's model here (tests: shorter)
SYSTEM_SECONDS = float(os.environ.get("HARNESS_SYSTEM_METRICS_SECONDS", 5))


class Store:
    """The MLflow store of one project: local SQLite under mlruns/, or a tracking server.
    Opening reads only; `reap_orphans` (called by the commands that write) ends the runs of
    dead processes."""

    def __init__(self, root: Path, tracking_uri: Optional[str] = None):
        self.root = Path(root)
        self.uri = tracking_uri or default_tracking_uri(self.root)
        self.local = self.uri.startswith("sqlite:")
        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        if self.local and Path(sqlite_path(self.uri)) == (paths.store_db(self.root)).resolve():
            paths.mlruns(self.root).mkdir(parents=True, exist_ok=True)  # the project's own store
        check_uri(self.uri)
        # No mlflow.set_tracking_uri here: it also sets MLFLOW_TRACKING_URI, which would then
        # point every later Store of this process (another project) at this one.
        try:
            self.client = self._open_local_store() if self.local else self._open_client()
        except HarnessError:
            raise
        except Exception as exc:  # noqa: BLE001 - drivers, SQLite and HTTP fail in many ways
            where = sqlite_path(self.uri) or self.uri
            raise HarnessError(f"tracking store {where}: cannot open ({first_line(exc)})") from None

    def _open_client(self) -> MlflowClient:
        client = MlflowClient(self.uri)
        client.search_experiments(max_results=1)
        return client

    def _open_local_store(self) -> MlflowClient:
        """Open (and on first use create) the SQLite store: processes starting together take
        turns (a file lock), else both run MLflow's migrations and one fails with "table
        already exists"."""
        import fcntl

        lock_path = paths.store_lock(self.root)
        path = Path(sqlite_path(self.uri))
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                _enable_wal(path)
                return self._open_client()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def fluent(self) -> Iterator[None]:
        """MLflow's fluent API (mlflow.start_run, log_model) on this store for the block, then
        the previous tracking URI and MLFLOW_TRACKING_URI restored."""
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env

    # ----------------------------------------------------------------- experiments

    def experiment_id(self, name: str, create: bool = True) -> Optional[str]:
        """The id of experiment `name`, created (artifacts under mlruns/artifacts) if needed."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted" and create:
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        if not create:
            return None
        location = paths.experiment_artifacts(self.root, name).resolve().as_uri() if self.local else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            found = self.client.get_experiment_by_name(name)  # another process made it first
            if found is None:
                raise
            return found.experiment_id

    def experiments(self) -> list:
        return self.client.search_experiments()

    # ----------------------------------------------------------------- runs

    def reap_orphans(self) -> list[str]:
        """Mark FAILED the RUNNING runs of this host whose process is gone (kill -9, power cut)."""
        host = socket.gethostname()
        reaped = []
        for experiment in self.experiments():
            runs = self.client.search_runs(
                [experiment.experiment_id],
                filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG}host` = '{host}'",
                max_results=1000,
            )
            for run in runs:
                pid = int(run.data.tags.get(Tag.PID, "0") or 0)
                if pid and process_alive(pid):
                    continue
                self._end(run.info.run_id, "FAILED", f"process {pid} died without ending the run")
                reaped.append(run.info.run_id)
        return reaped

    def find_finished(self, experiment_id: str, tags: dict[str, str], kinds: tuple[str, ...] = ()) -> Optional[Any]:
        """The latest FINISHED run carrying all these tags (and one of `kinds`), or None."""
        clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=" and ".join(["attributes.status = 'FINISHED'", *clauses]),
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
        runs = [r for r in runs if not kinds or r.data.tags.get(Tag.KIND) in kinds]
        return runs[0] if runs else None

    @contextlib.contextmanager
    def run(
        self,
        experiment_id: str,
        name: str,
        tags: dict[str, str],
        parent_run_id: Optional[str] = None,
        run_id: Optional[str] = None,
    ) -> Iterator[Any]:
        """Create (or reopen, given run_id) a run and end it FINISHED, FAILED or KILLED. An
        exception that carries `mlflow_status` and `reason` (errors.RunEnded, Interrupted)
        decides both; any other ends the run FAILED with its type and message."""
        process_tags = {Tag.PID: str(os.getpid()), Tag.HOST: socket.gethostname()}
        if run_id is None:
            all_tags = {**tags, **process_tags}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = self.client.create_run(experiment_id, run_name=name, tags=all_tags)
        else:
            self.client.update_run(run_id, status="RUNNING")
            with contextlib.suppress(Exception):
                self.client.delete_tag(run_id, Tag.REASON)  # the last attempt's ending
            self.log(run_id, tags=process_tags)
            run = self.client.get_run(run_id)
        run_id = run.info.run_id
        try:
            with GUARD.on_emergency(lambda reason: self._end(run_id, "KILLED", reason)):
                yield run
        except BaseException as exc:
            status = getattr(exc, "mlflow_status", None) or (
                "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            )
            reason = getattr(exc, "reason", None) or describe(exc)
            with contextlib.suppress(Exception):
                self.log(run_id, tags=getattr(exc, "mlflow_tags", None))
            with contextlib.suppress(Exception):  # a store that can no longer be written
                self._end(run_id, status, reason)
            raise
        else:
            self._end(run_id, "FINISHED", None)

    @contextlib.contextmanager
    def system_metrics(self, run_id: str, enabled: bool, resumed: bool = False) -> Iterator[None]:
        """MLflow's own system-metrics sampling (CPU, memory, GPU where present) for the block."""
        if not enabled:
            yield
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=SYSTEM_SECONDS, resume_logging=resumed, tracking_uri=self.uri
        )
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()
            with contextlib.suppress(Exception):  # the samples of the last, unfinished interval
                monitor.collect_metrics()  # (a run shorter than one interval would have none)
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()

    def _end(self, run_id: str, status: str, reason: Optional[str]) -> None:
        if reason:
            self.client.set_tag(run_id, Tag.REASON, reason[:5000])
        self.client.set_terminated(run_id, status=status)

    # ----------------------------------------------------------------- logging

    def log(
        self,
        run_id: str,
        params: Optional[dict[str, Any]] = None,
        metrics: Optional[dict[str, float]] = None,
        tags: Optional[dict[str, Any]] = None,
        step: int = 0,
    ) -> None:
        """Params, metrics and tags in as few calls as MLflow's batch limits allow."""
        now = int(time.time() * 1000)
        param_list = [Param(k, _text(v)) for k, v in (params or {}).items()]
        metric_list = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
        tag_list = [RunTag(k, _text(v)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(param_list), 1), PARAMS_PER_CALL):
            chunk = param_list[i : i + PARAMS_PER_CALL]
            first = i == 0
            self.client.log_batch(
                run_id,
                params=chunk,
                metrics=metric_list if first else [],
                tags=tag_list if first else [],
            )

    def log_artifact(self, run_id: str, path: Path, folder: Optional[str] = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)

    def runs(self, experiment_ids: list[str], filter_string: str = "", order_by=None, max_results: int = 5000):
        """All runs matching a filter, newest first by default (pages followed)."""
        out, token = [], None
        while True:
            page = self.client.search_runs(
                experiment_ids,
                filter_string=filter_string,
                order_by=order_by or ["attributes.start_time DESC"],
                max_results=min(max_results, 1000),
                page_token=token,
            )
            out.extend(page)
            token = page.token
            if not token or len(out) >= max_results:
                return out


def _enable_wal(path: Path) -> None:
    """SQLite in WAL mode, with a generous busy timeout: several local processes (parallel
    tune workers, two run-ablations) then write to one store without "database is locked".
    WAL is a property of the file, so an existing WAL store is only read here. The file is
    only ever opened through SQLite: a plain open() and close() of it would drop every
    POSIX lock this process's SQLite connections hold on it, and corrupt the store."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as connection:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        raise HarnessError(f"tracking store {path}: {exc}; move the file aside to start afresh") from None


def _text(value: Any) -> str:
    text = "None" if value is None else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
