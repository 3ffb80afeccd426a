"""Optuna studies over an entry's search space, each trial an MLflow child run.

- Storage: a journal file under mlruns/optuna/ by default (Optuna's advice for several local
  worker processes), or any RDB URL (PostgreSQL for workers on many machines).
- One study per entry, dataset and base spec; running `tune` again continues it.
- The entry's own values are enqueued as trial 0, so a study never ends worse than it.
- Pruning through optuna-integration's KerasPruningCallback on the monitored metric.
- One MLflow study run per study, found across processes through the study's user attrs.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import os
import socket
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState
from optuna_integration import KerasPruningCallback

from . import runner
from .ablation import Registry
from .paths import journal_path
from .errors import HarnessError, RunFailed
from .interrupts import GUARD
from .search_space import Dimension, current_values, parse_search
from .tracking import TAG, Store, experiment_name, process_alive
from .yamlio import dump_yaml

# RDB storages: a worker proves it is alive this often, and a trial silent for the grace
# period is failed and retried. Environment overrides exist for tests and slow networks.
HEARTBEAT_SECONDS = int(os.environ.get("HARNESS_HEARTBEAT_SECONDS", 30))
GRACE_SECONDS = int(os.environ.get("HARNESS_GRACE_SECONDS", 90))
MAX_RETRY = 2  # a trial failed by a dead worker is retried at most this often
STUDY_RUN_ATTR = "mlflow_study_run_id"

optuna.logging.set_verbosity(optuna.logging.ERROR)  # the harness prints its own line per trial (and no tracebacks)


@dataclass
class StudyOutcome:
    study_name: str
    storage: str
    study_run_id: str
    best_value: Optional[float]
    best_params: dict[str, Any]
    trials: int
    complete: int
    pruned: int
    failed: int
    epochs_spent: int


class PrunedAtEpoch(optuna.TrialPruned):
    """TrialPruned that ends its MLflow child run KILLED with the epoch in the reason."""

    mlflow_status = "KILLED"
    mlflow_tags = {f"{TAG}trial_state": "PRUNED"}

    def __init__(self, epoch: int):
        super().__init__(f"pruned at epoch {epoch}")
        self.epoch = epoch
        self.reason = f"pruned at epoch {epoch}"


class PruningCallback(KerasPruningCallback):
    """optuna-integration's Keras callback, re-raising pruning as PrunedAtEpoch."""

    def on_epoch_end(self, epoch, logs=None):
        try:
            super().on_epoch_end(epoch, logs)
        except optuna.TrialPruned:
            raise PrunedAtEpoch(epoch + 1) from None


# --------------------------------------------------------------------------- storage


def open_storage(root: Path, url: Optional[str]) -> tuple[Any, str]:
    """(storage, its description): the journal file by default, else an RDB URL."""
    if not url:
        path = journal_path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        # An open()-based lock: symlink locks misbehave on some network filesystems.
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend), str(path)
    if "://" not in url:
        raise HarnessError(f"--storage {url!r}: expected an RDB URL such as postgresql://user@host/db")
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
        raise HarnessError(f"--storage {_redact(url)}: cannot open ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    return storage, _redact(url)


SCHEMA_LOCK_KEY = 0x6861726E  # "harn": one advisory lock id for creating Optuna's tables


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
    folder = Path(root) / "mlruns" / "optuna"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(study_name.encode()).hexdigest()[:16]
    with open(folder / f"{digest}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        # 3 finished trials before judging, and no verdict in the first 2 epochs, where
        # batch-norm lag and warm-up make every trial look alike.
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise HarnessError(f"--pruner {name!r}: use median, hyperband or none")


def study_name_for(resolved, dataset_label: str) -> str:
    """entry@dataset/spec: one study per entry, dataset and base spec (edits start afresh)."""
    return f"{resolved.name}@{dataset_label}/{resolved.fingerprint()[:8]}"


# --------------------------------------------------------------------------- tuning


def tune(
    root: Path,
    name: str,
    trials: int,
    overrides: Sequence[str] = (),
    *,
    timeout: Optional[float] = None,
    storage_url: Optional[str] = None,
    pruner: str = "median",
    metric: str = "val_accuracy",
    tracking_uri: Optional[str] = None,
    echo=print,
    verbose: Any = None,
) -> StudyOutcome:
    """Run `trials` more trials of the entry's study (creating it on first use)."""
    if trials < 1:
        raise HarnessError(f"--trials {trials}: need at least one trial")
    registry = Registry(root)
    planned = runner.plan(registry, name, overrides)
    resolved = planned.resolved
    dimensions = parse_search(resolved, registry)
    if not dimensions:
        raise HarnessError(f"{registry.rel(resolved.entry.path)}: no search block to tune")
    direction = "maximize" if "acc" in metric else "minimize"
    storage, storage_label = open_storage(root, storage_url)
    label = experiment_name(planned.data.source, planned.spec.data.subset)
    study_name = study_name_for(resolved, label)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=direction,
        pruner=make_pruner(pruner, planned.spec.training.epochs),
        load_if_exists=True,
    )
    store = runner.open_for_writing(root, tracking_uri, echo)
    experiment_id = store.experiment_id(label)
    fail_stale_trials(study, storage)
    with study_lock(root, storage, study_name):
        study_run_id = _study_run(store, experiment_id, study, planned, root, storage_label, metric)
        if not study.trials:
            study.enqueue_trial(current_values(resolved, dimensions), skip_if_exists=True)
    done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    echo(f"study {study_name} ({storage_label}): {done} trials finished so far; running {trials} more")
    objective = _Objective(root, store, experiment_id, planned, dimensions, study_name, study_run_id, metric, echo, verbose)
    # The study run is a FINISHED record that every worker updates; no worker reopens it, so
    # one that crashes cannot mark the others' study FAILED.
    try:
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=(RunFailed, HarnessError),
                       callbacks=[_stop_on_signal])
    finally:
        outcome = summarise(study, storage_label, study_run_id)
        _log_study(store, study, outcome)
    GUARD.check()
    best = "none finished" if outcome.best_value is None else f"{outcome.best_value:.4f} with {outcome.best_params}"
    echo(
        f"study {study_name}: {outcome.trials} trials ({outcome.complete} complete, {outcome.pruned} pruned, "
        f"{outcome.failed} failed), {outcome.epochs_spent} epochs spent; best {metric} {best}"
    )
    return outcome


class _Objective:
    """One trial: sample, resolve, train as an MLflow child run, return the best metric."""

    def __init__(self, root, store, experiment_id, planned, dimensions, study_name, study_run_id, metric, echo, verbose):
        self.root, self.store, self.experiment_id = root, store, experiment_id
        self.planned, self.dimensions = planned, dimensions
        self.study_name, self.study_run_id, self.metric = study_name, study_run_id, metric
        self.echo, self.verbose = echo, verbose

    def __call__(self, trial: optuna.Trial) -> float:
        GUARD.check()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        values = {d.key: _suggest(trial, d) for d in self.dimensions}
        resolved = self.planned.resolved
        overrides = [*resolved.overrides, *(f"{k}={_as_yaml(v)}" for k, v in values.items())]
        registry = Registry(self.root)
        trial_resolved = registry.resolve(resolved.name, overrides)
        planned = runner.Planned(trial_resolved, self.planned.diff, self.planned.data)
        tags = {
            f"{TAG}study": self.study_name,
            f"{TAG}trial": str(trial.number),
            f"{TAG}sampled": ",".join(values),
        }
        try:
            outcome = runner.tracked_fit(
                self.root, self.store, self.experiment_id, planned, "trial", self.study_run_id,
                echo=self.echo, verbose=self.verbose, extra_callbacks=[PruningCallback(trial, self.metric)],
                extra_tags=tags, run_name=f"{resolved.name} trial {trial.number}", full_artifacts=False,
                checkpoints=False,
            )
        except PrunedAtEpoch as exc:
            trial.set_user_attr("epochs", exc.epoch)
            self.echo(f"trial {trial.number}: {exc.reason}")
            raise
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: Optuna fails this trial; run it again next time
            trial.study.enqueue_trial(values, user_attrs={"retry_of": trial.number})
            raise
        except HarnessError as exc:  # cannot build, NaN loss: this trial fails, the study goes on
            trial.set_user_attr("fail_reason", str(exc)[:500])
            self.echo(f"trial {trial.number} failed: {exc}")
            raise
        trial.set_user_attr("mlflow_run_id", outcome.run_id)
        trial.set_user_attr("epochs", int(outcome.metrics["epochs_run"]))
        value = float(outcome.metrics.get(f"best_{self.metric}", outcome.metrics[f"final_{self.metric}"]))
        self.echo(f"trial {trial.number}: {self.metric} {value:.4f} with {values}")
        return value


def _stop_on_signal(study, trial) -> None:
    """After each trial: a worker that received Ctrl-C or SIGTERM starts no other."""
    if GUARD.requested:
        study.stop()


def _suggest(trial: optuna.Trial, d: Dimension) -> Any:
    if d.kind == "float":
        return trial.suggest_float(d.key, d.low, d.high, log=d.log, step=d.step)
    if d.kind == "int":
        return trial.suggest_int(d.key, d.low, d.high, log=d.log, step=d.step or 1)
    return trial.suggest_categorical(d.key, list(d.choices))


def _as_yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _study_run(store: Store, experiment_id: str, study, planned, root: Path, storage_label: str, metric: str) -> str:
    """The study's MLflow run, created once and remembered in the study's user attrs."""
    existing = study.user_attrs.get(STUDY_RUN_ATTR)
    if existing:
        return existing
    r = planned.resolved
    tags = runner.run_tags(planned, "study", root)
    tags.update({f"{TAG}study": study.study_name, f"{TAG}storage": storage_label, f"{TAG}metric": metric})
    run = store.client.create_run(experiment_id, run_name=f"study {study.study_name}", tags=tags)
    store.log(run.info.run_id, params=r.flat())
    store.client.set_terminated(run.info.run_id, status="FINISHED")
    study.set_user_attr(STUDY_RUN_ATTR, run.info.run_id)
    study.set_user_attr("entry", r.name)
    study.set_user_attr("overrides", list(r.overrides))
    study.set_user_attr("dataset", planned.data.source)
    study.set_user_attr("metric", metric)
    return run.info.run_id


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
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            failed.append(trial.number)
    return failed


def summarise(study, storage_label: str, study_run_id: str) -> StudyOutcome:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    return StudyOutcome(
        study_name=study.study_name,
        storage=storage_label,
        study_run_id=study_run_id,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        trials=len(trials),
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        epochs_spent=sum(int(t.user_attrs.get("epochs", 0)) for t in trials),
    )


def _log_study(store: Store, study, outcome: StudyOutcome) -> None:
    run_id = outcome.study_run_id
    metrics = {"trials": outcome.trials, "trials_complete": outcome.complete, "trials_pruned": outcome.pruned,
               "trials_failed": outcome.failed, "epochs_spent": outcome.epochs_spent}
    if outcome.best_value is not None:
        metrics["best_value"] = outcome.best_value
    tags = {f"{TAG}best.{k}": v for k, v in outcome.best_params.items()}
    if outcome.best_value is not None:
        tags[f"{TAG}best_trial"] = str(study.best_trial.number)
    store.log(run_id, metrics=metrics, tags=tags, step=outcome.trials)
    with tempfile.TemporaryDirectory(prefix="harness-study-") as tmp:
        for path in study_plots(study, Path(tmp)):
            store.log_artifact(run_id, path)


def study_plots(study, folder: Path) -> list[Path]:
    """Optuna's optimization-history and parameter-importance plots as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    made = []
    plots = [("optimization_history.png", oplt.plot_optimization_history, 1)]
    plots.append(("param_importances.png", oplt.plot_param_importances, 2))
    for filename, plot, needed in plots:
        if len(complete) < needed:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue  # e.g. importances when every trial sampled the same values
        figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
        figure.tight_layout()
        figure.savefig(folder / filename, dpi=100)
        plt.close(figure)
        made.append(folder / filename)
    return made


# --------------------------------------------------------------------------- best -> entry


def load_study(root: Path, name: str, overrides: Sequence[str], storage_url: Optional[str]):
    """The existing study of an entry (same dataset and overrides as when it was tuned)."""
    registry = Registry(root)
    resolved = registry.resolve(name, list(overrides))
    subset = resolved.spec.data.subset
    study_name = study_name_for(resolved, experiment_name(resolved.spec.data.source, subset))
    storage, label = open_storage(root, storage_url)
    try:
        return optuna.load_study(study_name=study_name, storage=storage), label
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(f"{name}@")]
        hint = f"; studies of {name}: {', '.join(known)}" if known else ""
        raise HarnessError(f"no study {study_name!r} in {label} (tune it first, with the same --dataset/--set){hint}") from None


def write_best_entry(root: Path, name: str, new_name: str, overrides: Sequence[str] = (), storage_url: Optional[str] = None, force: bool = False) -> Path:
    """Write ablations/NEW.yaml: extends NAME, the study's best values, and where they came from."""
    registry = Registry(root)
    path = registry.path_of(new_name)
    if path.exists() and not force:
        raise HarnessError(f"{registry.rel(path)} exists; choose another name or pass --force")
    study, label = load_study(root, name, overrides, storage_url)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        raise HarnessError(f"study {study.study_name} has no complete trial yet")
    best = study.best_trial
    resolved = registry.resolve(name, list(overrides))
    sections = _nest(best.params, resolved.spec.model_dump(mode="json"))
    tuned_with = [o for o in overrides if not o.startswith("data.source=")]
    description = (
        f"{name} tuned by Optuna study {study.study_name} ({label}): best trial {best.number} of "
        f"{len(study.trials)}, {study.user_attrs.get('metric', 'val_accuracy')} {best.value:.4f}"
        + (f"; tuned with --set {' '.join(tuned_with)}" if tuned_with else "")
        + "."
    )
    document = {"extends": name, "description": description, **sections}
    path.write_text(f"# Written by `harness save-best {name} {new_name}`.\n" + dump_yaml(document))
    try:
        Registry(root).resolve(new_name)
    except HarnessError:
        path.unlink()
        raise
    return path


def _nest(values: dict[str, Any], resolved_tree: dict[str, Any]) -> dict[str, Any]:
    """Dotted best values -> entry sections. A key inside a list writes the whole list (lists
    replace when entries merge), taken from the resolved spec with the item changed."""
    out: dict[str, Any] = {}
    lists: dict[str, Any] = {}
    for key, value in values.items():
        parts = key.split(".")
        index = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        if index is None:
            node = out
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
            continue
        list_key = ".".join(parts[:index])
        if list_key not in lists:
            node = resolved_tree
            for part in parts[:index]:
                node = node[part]
            lists[list_key] = copy.deepcopy(node)
        item = lists[list_key][int(parts[index])]
        for part in parts[index + 1 : -1]:
            item = item[part]
        item[parts[-1]] = value
    for list_key, value in lists.items():
        parts = list_key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out

