"""Where Optuna studies live: a journal file under mlruns/optuna/ by default (Optuna's advice
for several worker processes on one machine), or any RDB URL (PostgreSQL for workers on many
machines, with heartbeats that fail and retry the trials of dead workers). Also the locks
that let workers start together, and the retry of trials whose worker died."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from harness import paths
from harness.errors import HarnessError, describe
from harness.locks import process_alive

# RDB storages: a worker proves it is alive this often, and a trial silent for the grace
# period is failed and retried. Environment overrides exist for tests and slow networks.
HEARTBEAT_SECONDS = int(os.environ.get("HARNESS_HEARTBEAT_SECONDS", 30))
GRACE_SECONDS = int(os.environ.get("HARNESS_GRACE_SECONDS", 90))
MAX_RETRY = 2  # a trial failed by a dead worker is retried at most this often
SCHEMA_LOCK_KEY = 0x6861726E  # "harn": one advisory lock id for creating Optuna's tables


def study_name_for(resolved, dataset_label: str) -> str:
    """entry@dataset/spec: one study per entry, dataset and base spec (edits start afresh)."""
    return f"{resolved.name}@{dataset_label}/{resolved.fingerprint()[:8]}"


def check_url(url: str) -> None:
    """An RDB URL whose driver loads and whose server answers, else a one-line HarnessError."""
    if "://" not in url:
        raise HarnessError(f"--storage {url!r}: expected an RDB URL such as postgresql://user@host/db")
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - unknown dialects, drivers and servers fail in many ways
        raise HarnessError(f"--storage {_redact(url)}: cannot open ({describe(exc)[:200]})") from None


def quiet_optuna() -> None:
    """Optuna's own log lines off but errors: the harness prints one line per trial or cell,
    and Optuna's "Trial N failed" lines would add tracebacks of what it has already said."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def open_storage(root: Path, url: Optional[str]) -> tuple[Any, str]:
    """(storage, its description): the journal file by default, else an RDB URL. Every way
    into a study passes here, so Optuna is quieted here (quiet_optuna)."""
    quiet_optuna()
    if not url:
        path = paths.journal_path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        # An open()-based lock: symlink locks misbehave on some network filesystems.
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend), str(path)
    check_url(url)
    try:
        with warnings.catch_warnings(), _schema_lock(url):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                engine_kwargs={"pool_pre_ping": True},
            )
    except Exception as exc:  # noqa: BLE001 - driver and connection errors vary by database
        raise HarnessError(
            f"--storage {_redact(url)}: cannot open ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None
    return storage, _redact(url)


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Workers starting together on a fresh PostgreSQL database take turns creating Optuna's
    tables (concurrent CREATE TABLEs collide on pg_type's unique index)."""
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


def _redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("://", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}:***@{tail}"


@contextlib.contextmanager
def study_lock(root: Path, storage: Any, study_name: str) -> Iterator[None]:
    """Serialise 'get or create the study run' across workers: a PostgreSQL advisory lock
    for PostgreSQL storages, else a file lock under mlruns/ (one machine)."""
    if isinstance(storage, RDBStorage) and storage.engine.dialect.name == "postgresql":
        key = zlib.crc32(study_name.encode())
        with storage.engine.connect() as connection:
            from sqlalchemy import text

            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                connection.commit()
        return
    folder = paths.optuna_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(study_name.encode()).hexdigest()[:16]
    with open(folder / f"{digest}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fail_stale_trials(study, storage) -> list[int]:
    """Fail and re-enqueue RUNNING trials whose worker process on this host is gone.
    RDB storages do this by Optuna's heartbeat; the journal file has none, so the harness
    checks the pid each trial recorded when it started."""
    if isinstance(storage, RDBStorage):
        return []  # Optuna's heartbeat and RetryFailedTrialCallback handle it
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = int(trial.user_attrs.get("pid", 0) or 0)
        if trial.user_attrs.get("host") != host or not pid or process_alive(pid):
            continue
        if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            kept = {k: v for k, v in trial.user_attrs.items() if k not in ("host", "pid")}
            study.enqueue_trial(trial.params, user_attrs={**kept, "retry_of": trial.number})
            failed.append(trial.number)
    return failed
