"""Every path of a project (the store, artifacts, backups, reports, studies and locks) and
the caches outside it (decoded image folders, Keras's downloads).
Light enough for the fast commands to import."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError


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
    """Where decoded image folders and split memos are kept: $HARNESS_CACHE or
    ~/.cache/harness. Something there that is not a folder is a one-line HarnessError."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "harness"
    folder = Path(os.environ.get("HARNESS_CACHE", default)).expanduser()
    if folder.exists() and not folder.is_dir():
        where = f"HARNESS_CACHE={os.environ['HARNESS_CACHE']}" if "HARNESS_CACHE" in os.environ else str(folder)
        raise HarnessError(f"{where}: not a folder; point HARNESS_CACHE at a folder the harness may write")
    return folder


# --------------------------------------------------------------------------- files written for the user

MADE_BY_HARNESS = ".made-by-harness"  # marks a folder the harness made, so it may replace it
CHART_SUFFIXES = (".png", ".svg", ".pdf")  # what matplotlib writes by the file's suffix


def check_output(
    path: Path,
    option: str,
    *,
    protected: Sequence[Path] = (),
    allowed: Sequence[Path] = (),
    suffixes: Sequence[str] = (),
) -> Path:
    """A file the harness will write for the user (--out, --chart), checked before any work:
    a file name (not empty, not a folder, not a device or FIFO), with one of `suffixes` when
    given, in an existing folder this process can write, that never resolves (through links
    too) into a `protected` place (the store, its backups, the Optuna journal, the caches)
    unless inside an `allowed` one (mlruns/reports). Returns the path as written; a bad one is
    a one-line HarnessError naming the option and the path."""
    text = str(path)
    if not text.strip():
        raise HarnessError(f"{option} {text!r}: give a file name")
    shown = f"{option} {text}"
    if suffixes and Path(text).suffix.lower() not in suffixes:
        raise HarnessError(f"{shown}: give a {' or '.join(suffixes)} file")
    target = Path(text).expanduser()
    if target.is_dir():
        raise HarnessError(f"{shown}: is a folder; give a file name")
    if target.exists() and not target.is_file():
        raise HarnessError(f"{shown}: not a regular file (a device, FIFO or socket)")
    resolved = target.resolve()
    if not resolved.parent.is_dir():
        raise HarnessError(f"{shown}: folder {target.parent} does not exist")
    if not os.access(resolved.parent, os.W_OK) or (resolved.exists() and not os.access(resolved, os.W_OK)):
        raise HarnessError(f"{shown}: not writable here ({resolved.parent} is read-only to this user)")
    for place in protected:
        place = Path(place).resolve()
        inside = resolved == place or place in resolved.parents
        if inside and not any(Path(a).resolve() in (resolved, *resolved.parents) for a in allowed):
            raise HarnessError(f"{shown}: {resolved} is part of the harness's own files ({place}); write elsewhere")
    return target


def check_own_folder(folder: Path, option: str) -> None:
    """A folder the harness will replace (a report's images): it must not exist, or carry the
    mark the harness leaves in the folders it makes; a user's folder is never deleted."""
    if folder.is_symlink() or (folder.exists() and not (folder / MADE_BY_HARNESS).is_file()):
        raise HarnessError(
            f"{option}: {folder} exists and was not made by the harness; move it or choose another --out"
        )


def write_file(path: Path, content: str | bytes) -> Path:
    """Write a file whole or not at all: a temporary file beside the target, then renamed over
    it (through a link, the file it points to is replaced). A failure (a full disk) is one
    HarnessError and leaves the old file as it was."""
    target = Path(path).resolve()
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content.encode() if isinstance(content, str) else content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise HarnessError(f"cannot write {path}: {exc.strerror or exc}") from None
    return Path(path)


def replace_folder(folder: Path, made: Path) -> None:
    """Put the folder `made` (built beside `folder`) in place of `folder`, marking it as the
    harness's; the old one is removed only if the harness made it (check_own_folder)."""
    (made / MADE_BY_HARNESS).write_text("harness report images; replaced by the next report\n")
    if folder.exists():
        check_own_folder(folder, "--out")
        shutil.rmtree(folder)
    os.replace(made, folder)
