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
import urllib.parse
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
HEARTBEAT_SECONDS = 30  # HARNESS_HEARTBEAT_SECONDS
GRACE_SECONDS = 90  # HARNESS_GRACE_SECONDS: three missed heartbeats
MAX_RETRY = 2  # a trial failed by a dead worker is retried at most this often
SCHEMA_LOCK_KEY = 0x6861726E  # "harn": one advisory lock id for creating Optuna's tables


def study_name_for(resolved, dataset_label: str) -> str:
    """entry@dataset/spec: one study per entry, dataset and base spec (edits start afresh)."""
    return f"{resolved.name}@{dataset_label}/{resolved.fingerprint()[:8]}"


def heartbeat_seconds() -> int:
    """How often a worker on an RDB storage proves it is alive ($HARNESS_HEARTBEAT_SECONDS)."""
    return _env_seconds("HARNESS_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)


def grace_seconds() -> int:
    """How long an RDB trial may stay silent before it is failed and retried."""
    return _env_seconds("HARNESS_GRACE_SECONDS", GRACE_SECONDS)


def _env_seconds(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    if not text.strip().isdigit() or not 1 <= int(text) <= 86_400:
        raise HarnessError(f"{name}={text!r}: expected a whole number of seconds from 1 to 86400")
    return int(text)


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


def check_storage(root: Path, url: Optional[str]) -> None:
    """A storage a study can live in, checked before anything is written: persistent (not
    SQLite in memory: the study would end with this process, and no worker could share it),
    and not one of the harness's own files (the MLflow store, or anything else in mlruns/
    but the Optuna folder): Optuna would add its tables to MLflow's database."""
    heartbeat_seconds(), grace_seconds()
    if not url:
        return
    if "://" not in url:
        raise HarnessError(f"--storage {url!r}: expected an RDB URL such as postgresql://user@host/db")
    if url.startswith("sqlite:"):
        database = _sqlite_database(url)
        if database in ("", ":memory:") or "mode=memory" in url:
            raise HarnessError(
                f"--storage {url}: SQLite in memory ends with this process, and no other worker can share it; "
                "give a file (sqlite:///path) or PostgreSQL"
            )
        target = Path(database).expanduser().resolve()
        own = paths.mlruns(root).resolve()
        if (target == own or own in target.parents) and paths.optuna_folder(root).resolve() not in target.parents:
            raise HarnessError(f"--storage {url}: {target} is one of the harness's own files; give another file")
        if target.is_file() and _is_mlflow_store(target):
            raise HarnessError(f"--storage {url}: {target} is an MLflow store; give another file")


def _sqlite_database(url: str) -> str:
    """The database part of a sqlite URL as SQLAlchemy reads it: '' or ':memory:' for memory."""
    return urllib.parse.unquote(url.split("://", 1)[1].removeprefix("/").split("?", 1)[0])


def _sqlite_file(url: str) -> Path:
    return Path(_sqlite_database(url)).expanduser()


def _is_mlflow_store(path: Path) -> bool:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return False
    return {"experiments", "runs", "latest_metrics"} <= tables


def open_storage(root: Path, url: Optional[str], create: bool = True) -> tuple[Any, str]:
    """(storage, its description): the journal file by default, else an RDB URL, checked
    first (check_storage). With create=False (a dry run) a storage that does not exist yet is
    (None, description), and nothing is created. Every way into a study passes here, so
    Optuna is quieted here (quiet_optuna)."""
    quiet_optuna()
    check_storage(root, url)
    if not url:
        path = paths.journal_path(root)
        if not create and not path.is_file():
            return None, str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # An open()-based lock: symlink locks misbehave on some network filesystems.
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend), str(path)
    if not create and url.startswith("sqlite:") and not _sqlite_file(url).is_file():
        return None, _redact(url)  # connecting would create the file
    check_url(url)
    if not create and not _has_optuna_tables(url):
        return None, _redact(url)
    try:
        with warnings.catch_warnings(), _schema_lock(url):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                url,
                heartbeat_interval=heartbeat_seconds(),
                grace_period=grace_seconds(),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                engine_kwargs={"pool_pre_ping": True},
                skip_table_creation=not create,
            )
    except Exception as exc:  # noqa: BLE001 - driver and connection errors vary by database
        raise HarnessError(
            f"--storage {_redact(url)}: cannot open ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None
    return storage, _redact(url)


def _has_optuna_tables(url: str) -> bool:
    """Whether the database already holds Optuna's tables (a SQLite file that does not exist
    holds none, and is not created by asking)."""
    import sqlalchemy

    if url.startswith("sqlite:") and not _sqlite_file(url).is_file():
        return False
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        return "studies" in sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


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
