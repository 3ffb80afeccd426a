"""MLflow: the store, experiments per dataset, the run lifecycle and per-epoch logging.

A run never stays RUNNING: an exception ends it FAILED, Ctrl-C or SIGTERM KILLED, each with
the reason in the `harness.reason` tag; a run whose process was killed outright (kill -9) is
marked FAILED by the next command that opens the store (`Store.reap_orphans`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import keras
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from .errors import HarnessError, Terminated

TAG = "harness."  # prefix of the harness's own tags, apart from MLflow's
PARAMS_PER_CALL = 100  # MLflow's log_batch limit for params
METRICS_PER_CALL = 1000  # and for metrics


def default_tracking_uri(root: Path) -> str:
    """$MLFLOW_TRACKING_URI, or the SQLite store in <root>/mlruns (MLflow 3 drops the file store)."""
    local = f"sqlite:///{(Path(root) / 'mlruns' / 'mlflow.db').resolve()}?timeout=60"
    return os.environ.get("MLFLOW_TRACKING_URI") or local


def experiment_name(source: str, subset: Optional[int]) -> str:
    """One experiment per dataset: runs on different data are never compared."""
    return source if subset is None else f"{source} (subset {subset})"


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    def handler(signum, frame):
        raise Terminated("terminated by SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Store:
    """The MLflow store of one project: local SQLite under mlruns/, or a tracking server."""

    def __init__(self, root: Path, tracking_uri: Optional[str] = None):
        self.root = Path(root)
        self.uri = tracking_uri or default_tracking_uri(self.root)
        self.local = self.uri.startswith("sqlite:")
        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # No mlflow.set_tracking_uri here: it also sets MLFLOW_TRACKING_URI, which would then
        # point every later Store of this process (another project) at this one.
        self.client = self._open_local_store() if self.local else MlflowClient(self.uri)
        self.reaped = self.reap_orphans()

    def _open_local_store(self) -> MlflowClient:
        """Open (and on first use create) the SQLite store: processes starting together take
        turns (a file lock), else both run MLflow's migrations and one fails with "table
        already exists"."""
        import fcntl

        folder = self.root / "mlruns"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".store.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                _enable_wal(self.uri)
                client = MlflowClient(self.uri)
                client.search_experiments(max_results=1)
                return client
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
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        if not create:
            return None
        location = None
        if self.local:
            folder = self.root / "mlruns" / "artifacts" / _safe_folder(name)
            location = folder.resolve().as_uri()
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
                pid = int(run.data.tags.get(f"{TAG}pid", "0") or 0)
                if pid and process_alive(pid):
                    continue
                self.client.set_tag(run.info.run_id, f"{TAG}reason", f"process {pid} died without ending the run")
                self.client.set_terminated(run.info.run_id, status="FAILED")
                reaped.append(run.info.run_id)
        return reaped

    def find_finished(self, experiment_id: str, tags: dict[str, str]) -> Optional[Any]:
        """The latest FINISHED run carrying all these tags, or None."""
        clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=" and ".join(["attributes.status = 'FINISHED'", *clauses]),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
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
        """Create (or reopen, given run_id) a run and end it FINISHED, FAILED or KILLED (an
        exception may name its status and reason as `mlflow_status` and `reason`)."""
        process_tags = {f"{TAG}pid": str(os.getpid()), f"{TAG}host": socket.gethostname()}
        if run_id is None:
            all_tags = {**tags, **process_tags}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = self.client.create_run(experiment_id, run_name=name, tags=all_tags)
        else:
            self.client.update_run(run_id, status="RUNNING")
            self.log(run_id, tags=process_tags)
            run = self.client.get_run(run_id)
        run_id = run.info.run_id
        try:
            with sigterm_as_exception():
                yield run
        except (KeyboardInterrupt, Terminated) as exc:
            self._end(run_id, "KILLED", str(exc) or "interrupted (Ctrl-C)")
            raise
        except BaseException as exc:
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                self.log(run_id, tags=getattr(exc, "mlflow_tags", None))
            self._end(run_id, getattr(exc, "mlflow_status", "FAILED"), reason)
            raise
        else:
            self._end(run_id, "FINISHED", None)

    def _end(self, run_id: str, status: str, reason: Optional[str]) -> None:
        if reason:
            self.client.set_tag(run_id, f"{TAG}reason", reason[:5000])
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


class EpochLogger(keras.callbacks.Callback):
    """One batched MLflow call per epoch: losses, accuracies, learning rate, epoch seconds.
    `step` is the epoch number (1-based), so resumed runs continue the curve; epochs up to
    `skip_through` were logged before an interruption and are not logged twice.

    Synchronous on purpose: the epoch's metrics are committed before BackupAndRestore saves
    the epoch, so a kill -9 can never leave a backed-up epoch without its metrics (a gap on
    resume). It costs one SQLite write per epoch (milliseconds; bench/overhead.py)."""

    def __init__(self, client: MlflowClient, run_id: str, skip_through: int = 0):
        super().__init__()
        self.client, self.run_id, self.skip_through = client, run_id, skip_through

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 <= self.skip_through:
            return
        now = int(time.time() * 1000)
        values = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        metrics = [Metric(k, float(v), now, epoch + 1) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)


def _enable_wal(uri: str) -> None:
    """SQLite in WAL mode, with a generous busy timeout: several local processes (parallel
    tune workers, two run-ablations) then write to one store without "database is locked"."""
    import sqlite3

    path = uri.split("sqlite:///", 1)[-1].split("?", 1)[0]
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _text(value: Any) -> str:
    text = "None" if value is None else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _safe_folder(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "default"


def require_store(root: Path, tracking_uri: Optional[str]) -> Store:
    """A Store for reading: a missing local store is a HarnessError, not a new empty one."""
    uri = tracking_uri or default_tracking_uri(root)
    if uri.startswith("sqlite:") and not (Path(root) / "mlruns" / "mlflow.db").is_file():
        raise HarnessError(f"no runs yet: {Path(root) / 'mlruns' / 'mlflow.db'} does not exist")
    return Store(root, uri)
