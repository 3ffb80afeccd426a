"""MLflow: the store that writes, experiments per dataset, the run lifecycle and batched
logging. It also keeps the reading interface (protocol.RunStore) over any tracking URI.

A run never stays RUNNING: an exception ends it FAILED, Ctrl-C or SIGTERM KILLED, each with
the reason in the `harness.reason` tag; a second signal ends it KILLED from the signal
guard before exiting; a run whose process was killed outright (kill -9) is marked FAILED by
the next command that writes (`Store.reap_orphans`). Opening the store writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from harness import paths
from harness.errors import HarnessError, describe, first_line
from harness.interrupts import GUARD
from harness.locks import process_alive
from harness.tracking.names import SAVED_VIEW, Tag, saved_view, view_key
from harness.tracking.protocol import MAX_RUNS, Experiment, MetricPoint, Run, Statuses, status_list
from harness.tracking.uri import check_store_file, check_uri, default_tracking_uri, sqlite_path

PARAMS_PER_CALL = 100  # MLflow's log_batch limit for params
TAGS_PER_CALL = 100  # and for tags
METRICS_PER_CALL = 800  # metrics take the rest of the 1000 entities a call may hold
PAGE = 1000  # runs per search_runs call: MLflow's largest page
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
        check_store_file(path)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        strays = _folders_mlflow_would_make(self.uri)
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                _refuse_unknown_schema(path)
                _enable_wal(path)
                return self._open_client()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
                for folder in strays:  # deepest first; only the empty ones MLflow just made
                    with contextlib.suppress(OSError):
                        folder.rmdir()

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

    # ----------------------------------------------------------------- reading (protocol.RunStore)

    def experiments(self) -> list[Experiment]:
        """The active experiments, newest first."""
        return self.client.search_experiments()

    def experiment_id(self, name: str) -> Optional[str]:
        """The id of the experiment named `name` (a deleted one too), or None."""
        found = self.client.get_experiment_by_name(name)
        return None if found is None else found.experiment_id

    def runs(
        self,
        experiment_id: str,
        *,
        status: Statuses = None,
        tags: Optional[Mapping[str, str]] = None,
        limit: int = MAX_RUNS,
    ) -> list[Run]:
        """The experiment's active runs with this status (or one of these) and all these tag
        values, newest first, at most `limit` (MLflow's pages followed)."""
        statuses = status_list(status) or [None]
        found: list[Run] = []
        for one in statuses:  # MLflow's filter has no OR: one search per status
            found += self._search(experiment_id, _filter_string(one, tags or {}), limit)
        if len(statuses) > 1:
            found.sort(key=lambda run: (-(run.info.start_time or 0), run.info.run_id))
        return found[:limit]

    def _search(self, experiment_id: str, filter_string: str, limit: int) -> list[Run]:
        out, token = [], None
        while True:
            page = self.client.search_runs(
                [experiment_id],
                filter_string=filter_string,
                order_by=["attributes.start_time DESC"],
                max_results=min(limit, PAGE),
                page_token=token,
            )
            out.extend(page)
            token = page.token
            if not token or len(out) >= limit:
                return out

    def get_run(self, run_id: str) -> Run:
        """One run by id, deleted or not; KeyError if there is none."""
        try:
            return self.client.get_run(run_id)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise KeyError(f"run {run_id} not found") from None
            raise

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every logged value of one metric of a run, by step."""
        return self.client.get_metric_history(run_id, key)

    def download_artifact(self, run_id: str, path: str, destination: Path) -> Path:
        """Copy one artifact (file or folder) of a run into `destination`; its local path."""
        try:
            return Path(self.client.download_artifacts(run_id, path, str(destination)))
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            raise FileNotFoundError(f"run {run_id} has no artifact {path} ({first_line(exc)})") from None

    # ----------------------------------------------------------------- writing

    def ensure_experiment(self, name: str) -> str:
        """The id of experiment `name`, created (artifacts under mlruns/artifacts) or restored
        from deletion if need be."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        location = paths.experiment_artifacts(self.root, name).resolve().as_uri() if self.local else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            found = self.client.get_experiment_by_name(name)  # another process made it first
            if found is None:
                raise
            return found.experiment_id

    def ensure_view(self, experiment_id: str, settings_fingerprint: str, settings_label: str) -> str:
        """The key of the saved view (in MLflow's UI) of one settings set's ranked runs,
        saved on the experiment the first time a run of those settings is made."""
        key = view_key(settings_fingerprint)
        tag = SAVED_VIEW + key
        if tag not in self.client.get_experiment(experiment_id).tags:
            value = saved_view(settings_label, settings_fingerprint, int(time.time() * 1000))
            self.client.set_experiment_tag(experiment_id, tag, value)
        return key

    def experiment_tags(self, experiment_id: str) -> dict[str, str]:
        return dict(self.client.get_experiment(experiment_id).tags)

    def reap_orphans(self) -> list[str]:
        """Mark FAILED the RUNNING runs of this host whose process is gone (kill -9, power cut)."""
        host = socket.gethostname()
        reaped = []
        for experiment in self.experiments():
            for run in self.runs(experiment.experiment_id, status="RUNNING", tags={Tag.HOST: host}):
                pid = int(run.data.tags.get(Tag.PID, "0") or 0)
                if pid and process_alive(pid):
                    continue
                self._end(run.info.run_id, "FAILED", f"process {pid} died without ending the run")
                reaped.append(run.info.run_id)
        return reaped

    @contextlib.contextmanager
    def run(
        self,
        experiment_id: str,
        name: str,
        tags: dict[str, str],
        parent_run_id: Optional[str] = None,
        run_id: Optional[str] = None,
        *,
        ends: str = "FINISHED",
    ) -> Iterator[Any]:
        """Create (or reopen, given run_id) a run and end it `ends` (FINISHED; SCHEDULED for
        a run whose work comes later, a study's or a seed group's), FAILED or KILLED. An
        exception that carries `mlflow_status` and `reason` (errors.RunEnded, Interrupted)
        decides both; any other ends the run FAILED with its type and message. The run
        carries this process's pid and host, so one left RUNNING by a kill -9 is reaped."""
        process_tags = {Tag.PID: str(os.getpid()), Tag.HOST: socket.gethostname()}
        if run_id is None:
            all_tags = {**tags, **process_tags}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = self.client.create_run(experiment_id, run_name=name, tags=all_tags)
            if tags.get(Tag.RANKED) and tags.get(Tag.SETTINGS_FINGERPRINT):
                with contextlib.suppress(Exception):  # a view is a convenience: never a run left RUNNING
                    self.ensure_view(experiment_id, tags[Tag.SETTINGS_FINGERPRINT], tags.get(Tag.SETTINGS, ""))
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
            self._end(run_id, ends, None)

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
        """Params, metrics and tags in as few log_batch calls as MLflow's limits allow (100
        params, 100 tags and 1000 entities in all per call)."""
        now = int(time.time() * 1000)
        param_list = [Param(k, _text(v)) for k, v in (params or {}).items()]
        metric_list = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
        tag_list = [RunTag(k, _text(v)) for k, v in (tags or {}).items()]
        calls = max(
            -(-len(param_list) // PARAMS_PER_CALL),
            -(-len(tag_list) // TAGS_PER_CALL),
            -(-len(metric_list) // METRICS_PER_CALL),
        )
        for i in range(calls):
            self.client.log_batch(
                run_id,
                params=param_list[i * PARAMS_PER_CALL : (i + 1) * PARAMS_PER_CALL],
                metrics=metric_list[i * METRICS_PER_CALL : (i + 1) * METRICS_PER_CALL],
                tags=tag_list[i * TAGS_PER_CALL : (i + 1) * TAGS_PER_CALL],
            )

    def log_artifact(self, run_id: str, path: Path, folder: Optional[str] = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)


def _filter_string(status: Optional[str], tags: Mapping[str, str]) -> str:
    """MLflow's filter for one status (None: any) and tag equalities. A value MLflow's filter
    grammar cannot quote (it holds a quote) is a ValueError: the harness's tag values
    (names, fingerprints, kinds, host names) never do."""
    clauses = [] if status is None else [f"attributes.status = {_quoted(status)}"]
    for key, value in tags.items():
        if "`" in key:
            raise ValueError(f"tag {key!r} cannot be searched in MLflow")
        clauses.append(f"tags.`{key}` = {_quoted(value)}")
    return " and ".join(clauses)


def _quoted(value: str) -> str:
    if "'" in str(value):
        raise ValueError(f"{value!r} cannot be searched in MLflow (it holds a quote)")
    return f"'{value}'"


def _folders_mlflow_would_make(uri: str) -> list[Path]:
    """MLflow makes the store's folder from the URI's raw text: where the path needed
    escaping (a '%' or '?' in it), that is another, wrong folder. The ones that do not exist
    yet, deepest first, so they can be removed again once MLflow has made them."""
    raw = Path(uri.removeprefix("sqlite:///")).parent
    if raw == Path(sqlite_path(uri)).parent:
        return []
    missing = []
    while not raw.exists() and raw != raw.parent:
        missing.append(raw)
        raw = raw.parent
    return missing


def _refuse_unknown_schema(path: Path) -> None:
    """An existing file that is not an MLflow store, or one of a schema revision this harness
    does not read, is refused before anything writes to it (MLflow would add its tables to
    another program's database, and the WAL switch below rewrites the file's header). An
    absent or empty file is left for MLflow to create."""
    import sqlite3

    from harness.tracking.reader import UnknownStore, check_schema

    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            check_schema(connection)
    except UnknownStore as exc:
        if "empty" not in str(exc):
            raise HarnessError(f"tracking store {path}: {exc}") from None
    except sqlite3.OperationalError:
        return  # locked, or a WAL file in a folder this process cannot write: MLflow says which
    except sqlite3.DatabaseError as exc:
        raise HarnessError(f"tracking store {path}: {exc}; move the file aside to start afresh") from None


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
