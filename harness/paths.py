"""Every path of a project (the store, artifacts, backups, reports, studies and locks) and
the caches outside it (decoded image folders, Keras's downloads).
Light enough for the fast commands to import."""

from __future__ import annotations

import os
from pathlib import Path


def mlruns(root: Path) -> Path:
    """The local store's folder (its contents are git-ignored)."""
    return Path(root) / "mlruns"


def store_db(root: Path) -> Path:
    return mlruns(root) / "mlflow.db"


def store_lock(root: Path) -> Path:
    """Taken while the SQLite store is opened (and, the first time, created)."""
    return mlruns(root) / ".store.lock"


def experiment_artifacts(root: Path, experiment: str) -> Path:
    """Artifacts of one experiment (dataset) in the local store."""
    return mlruns(root) / "artifacts" / slug(experiment, 80)


def backup_dir(root: Path, run_id: str) -> Path:
    """A run's training-state backup, removed when the run finishes."""
    return mlruns(root) / "backups" / run_id


def backup_state(root: Path, run_id: str) -> Path:
    """The one file a run's backup consists of (checkpoint.py writes it atomically)."""
    return backup_dir(root, run_id) / "state.npz"


def run_lock(root: Path, identity: str) -> Path:
    """Taken while one spec trains on one dataset, so two identical commands train once."""
    return mlruns(root) / "locks" / f"{slug(identity, 100)}.lock"


def reports(root: Path) -> Path:
    return mlruns(root) / "reports"


def optuna_folder(root: Path) -> Path:
    return mlruns(root) / "optuna"


def journal_path(root: Path) -> Path:
    """The default Optuna storage: a journal file under mlruns/optuna/."""
    return optuna_folder(root) / "journal.log"


def slug(text: str, limit: int = 80, keep: str = "-_.", fill: str = "_") -> str:
    """Text as a safe file, metric or model name: letters, digits and `keep` kept, every other
    character replaced by `fill`, cut at `limit` ("default" when nothing is left)."""
    cleaned = "".join(c if c.isalnum() or c in keep else fill for c in str(text))
    return cleaned[:limit] or "default"


def metric_slug(label: str) -> str:
    """A class or row label as part of a metric name: val_f1_<slug>, e.g. 'Macro Avg' -> macro_avg."""
    return slug(str(label).lower(), 200, keep="", fill="_")


def keras_home() -> Path:
    """Keras's own cache ($KERAS_HOME or ~/.keras): downloaded datasets and weights."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()


def cache_dir() -> Path:
    """Where decoded image folders are kept: $HARNESS_CACHE or ~/.cache/harness."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "harness"
    return Path(os.environ.get("HARNESS_CACHE", default)).expanduser()
