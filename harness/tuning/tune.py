"""Optuna studies over an entry's search space, each trial an MLflow child run.

- One study per entry, dataset and base spec; running `tune` again continues it.
- The entry's own values are enqueued as trial 0, so a study never ends worse than it.
- Pruning through optuna-integration's KerasPruningCallback on the monitored metric.
- One MLflow study run per study, found across processes through the study's user attrs.
Storage (journal file or RDB) lives in tune_storage.py; the best trial as an entry in
best_entry.py.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import TrialState

from harness.context import Context
from harness.entries.registry import Registry
from harness.entries.yamlio import yaml_scalar
from harness.errors import HarnessError, RunFailed
from harness.interrupts import GUARD
from harness.runs.planning import Planned, plan, run_tags
from harness.runs.tracked_run import RunOptions, tracked_fit
from harness.tracking.names import Tag, run_link
from harness.tracking.run_inputs import log_dataset_inputs
from harness.tracking.store import Store
from harness.tuning.search_space import Dimension, current_values, parse_search
from harness.tuning.storage import fail_stale_trials, open_storage, study_lock, study_name_for

STUDY_RUN_ATTR = "mlflow_study_run_id"
PRUNERS = ("median", "hyperband", "none")
METRICS = ("val_accuracy", "val_loss")  # what a trial reports, the best epoch's value


@dataclass(frozen=True)
class TuneSettings:
    """trials: how many to run now (they add up across calls); timeout: stop starting trials
    after this many seconds; storage_url: None for the journal file; pruner: median,
    hyperband or none; metric: val_accuracy (maximised) or val_loss (minimised)."""

    trials: int
    timeout: Optional[float] = None
    storage_url: Optional[str] = None
    pruner: str = "median"
    metric: str = "val_accuracy"

    def check(self) -> None:
        if self.trials < 1:
            raise HarnessError(f"--trials {self.trials}: need at least one trial")
        if self.pruner not in PRUNERS:
            raise HarnessError(f"--pruner {self.pruner!r}: use {', '.join(PRUNERS)}")
        if self.metric not in METRICS:
            raise HarnessError(f"--metric {self.metric!r}: use {' or '.join(METRICS)}")
        if self.timeout is not None and not self.timeout > 0:
            raise HarnessError(f"--timeout {self.timeout}: give a positive number of seconds")


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


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        # 3 finished trials before judging, and no verdict in the first 2 epochs, where
        # batch-norm lag and warm-up make every trial look alike.
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


def tune(ctx: Context, name: str, settings: TuneSettings, overrides: Sequence[str] = ()) -> StudyOutcome:
    """Run `settings.trials` more trials of the entry's study (creating it on first use)."""
    settings.check()
    registry = Registry(ctx.root)
    planned = plan(registry, name, overrides)
    dimensions = parse_search(planned.resolved, registry)
    if not dimensions:
        raise HarnessError(f"{registry.rel(planned.resolved.entry.path)}: no search block to tune")
    storage, storage_label = open_storage(ctx.root, settings.storage_url)
    study = _open_study(planned, settings, storage)
    store = ctx.writable_store
    experiment_id = store.ensure_experiment(planned.experiment)
    fail_stale_trials(study, storage)
    with study_lock(ctx.root, storage, study.study_name):
        run_id = _study_run(
            ctx, experiment_id, study, planned, storage_label=storage_label, metric=settings.metric, settings=overrides
        )
        _first_trial_and_names(study, planned, dimensions, settings.metric)
    record = StudyRecord(run_id, settings.metric, tuple(overrides), settings.trials)
    from harness.training.quiet import load_keras

    with GUARD.exits_at_once():  # before the pruning callback imports Keras: TensorFlow's start-up lines go unseen
        load_keras()
    done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    ctx.echo(
        f"study {study.study_name} ({storage_label}): {done} trials finished so far; running {settings.trials} more"
    )
    outcome = _optimize(ctx, study, _Objective(ctx, planned, dimensions, record), settings, storage_label)
    GUARD.check()
    _say_outcome(ctx, outcome, settings.metric, run_link(store.uri, experiment_id, record.run_id))
    return outcome


def _open_study(planned: Planned, settings: TuneSettings, storage) -> optuna.Study:
    """The entry's study in `storage`: created on first use, else loaded."""
    return optuna.create_study(
        study_name=study_name_for(planned.resolved, planned.experiment),
        storage=storage,
        direction="maximize" if "acc" in settings.metric else "minimize",
        pruner=make_pruner(settings.pruner, planned.spec.training.epochs),
        load_if_exists=True,
    )


def _first_trial_and_names(study: optuna.Study, planned: Planned, dimensions: list[Dimension], metric: str) -> None:
    """A new study's first trial is the entry's own values; its objective is named after
    the metric (optuna-dashboard then says val_accuracy, not Objective 0)."""
    if not study.trials:
        study.enqueue_trial(current_values(planned.resolved, dimensions), skip_if_exists=True)
    with warnings.catch_warnings():  # experimental since Optuna 3.2, and the only way to name it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric])


def _optimize(ctx: Context, study: optuna.Study, objective, settings: TuneSettings, storage_label: str) -> StudyOutcome:
    """Run the trials; the study run's summary is logged whatever ends them. The study run
    is a FINISHED record that every worker updates; no worker reopens it, so one that
    crashes cannot mark the others' study FAILED."""
    try:
        study.optimize(
            objective,
            n_trials=settings.trials,
            timeout=settings.timeout,
            catch=(RunFailed, HarnessError),
            callbacks=[_stop_on_signal],
        )
    finally:
        outcome = summarise(study, storage_label, objective.record.run_id)
        _log_study(ctx.writable_store, study, outcome)
    return outcome


def _say_outcome(ctx: Context, outcome: StudyOutcome, metric: str, link: str) -> None:
    best = (
        "none finished"
        if outcome.best_value is None
        else f"{outcome.best_value:.4f} with {_shown(outcome.best_params)}"
    )
    ctx.echo(
        f"study {outcome.study_name}: {outcome.trials} trials ({outcome.complete} complete, {outcome.pruned} pruned, "
        f"{outcome.failed} failed), {outcome.epochs_spent} epochs spent; best {metric} {best}"
    )
    ctx.echo(f"study run: {link}")


@dataclass(frozen=True)
class StudyRecord:
    """What every trial of one `tune` call shares: the study's MLflow run, the monitored
    metric, the user's overrides (the trials' settings), how many trials this call runs."""

    run_id: str
    metric: str
    settings: tuple[str, ...]
    trials: int


class _Objective:
    """One trial: sample, resolve, train as an MLflow child run, return the best metric."""

    def __init__(self, ctx: Context, planned: Planned, dimensions: list[Dimension], record: StudyRecord):
        self.ctx, self.planned, self.dimensions, self.record = ctx, planned, dimensions, record
        self.started = 0

    def __call__(self, trial: optuna.Trial) -> float:
        """Ctrl-C or SIGTERM at any moment of a trial, even before it sampled (the signal
        may land between Optuna's ask and this call), queues the same values again: a
        study never loses its first trial, the entry's own values."""
        try:
            with GUARD.holding():
                return self._run(trial)
        except KeyboardInterrupt:  # Optuna fails this trial; the same values run next time
            values = dict(trial.params) or _fixed_params(trial)
            if values:
                trial.study.enqueue_trial(values, user_attrs={"retry_of": trial.number})
            raise

    def _run(self, trial: optuna.Trial) -> float:
        from harness.tuning.pruning import PrunedAtEpoch, PruningCallback

        GUARD.check()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        values = {d.key: _suggest(trial, d) for d in self.dimensions}
        self.started += 1
        self.ctx.echo(f"trial {self.started} of {self.record.trials} (Optuna trial #{trial.number}): {_shown(values)}")
        resolved, metric = self.planned.resolved, self.record.metric
        overrides = [*resolved.overrides, *(f"{k}={yaml_scalar(v)}" for k, v in values.items())]
        trial_resolved = Registry(self.ctx.root).resolve(resolved.name, overrides)
        planned = Planned(trial_resolved, self.planned.diff, self.planned.data)
        options = RunOptions(
            kind="trial",
            parent_run_id=self.record.run_id,
            run_name=f"{resolved.name} trial {trial.number}",
            tags={
                Tag.STUDY: trial.study.study_name,
                Tag.TRIAL: str(trial.number),
                Tag.SAMPLED: ",".join(values),
            },
            callbacks=[PruningCallback(trial, metric)],
            save_model=False,
            checkpoints=False,
            settings=self.record.settings,
        )
        try:
            outcome = tracked_fit(self.ctx, planned, options)
        except PrunedAtEpoch as exc:
            trial.set_user_attr("epochs", exc.epoch)
            self.ctx.echo(f"trial {trial.number}: {exc.reason}")
            raise
        except HarnessError as exc:  # cannot build, NaN loss: this trial fails, the study goes on
            trial.set_user_attr("fail_reason", str(exc)[:500])
            self.ctx.echo(f"trial {trial.number} failed: {exc}")
            raise
        trial.set_user_attr("mlflow_run_id", outcome.run_id)
        trial.set_user_attr("epochs", int(outcome.metrics["epochs_run"]))
        value = float(outcome.metrics[f"best_{metric}"])  # METRICS: every run logs best_val_accuracy and _loss
        self.ctx.echo(f"trial {trial.number}: {metric} {value:.4f}")
        return value


def _fixed_params(trial: optuna.Trial) -> dict[str, Any]:
    """The values a trial was enqueued with (the entry's own, for the first), before it has
    sampled any: kept in the frozen trial's system attributes."""
    frozen = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number), None)
    return dict(frozen.system_attrs.get("fixed_params", {})) if frozen is not None else {}


def _shown(values: dict[str, Any]) -> str:
    """Sampled values as one reads them: 4 significant digits."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


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


def _study_run(
    ctx: Context,
    experiment_id: str,
    study,
    planned: Planned,
    *,
    storage_label: str,
    metric: str,
    settings: Sequence[str],
) -> str:
    """The study's MLflow run, created once and remembered in the study's user attrs;
    settings: the user's overrides (the trials' settings)."""
    existing = study.user_attrs.get(STUDY_RUN_ATTR)
    if existing:
        return existing
    r, store = planned.resolved, ctx.writable_store
    tags = run_tags(planned, "study", ctx.root, settings)
    tags.update({Tag.STUDY: study.study_name, Tag.STORAGE: storage_label, Tag.METRIC: metric})
    run = store.client.create_run(experiment_id, run_name=f"{r.name} study", tags=tags)
    store.log(run.info.run_id, params=r.flat())
    log_dataset_inputs(store.client, run.info.run_id, planned.data)
    store.client.set_terminated(run.info.run_id, status="FINISHED")
    study.set_user_attr(STUDY_RUN_ATTR, run.info.run_id)
    study.set_user_attr("entry", r.name)
    study.set_user_attr("overrides", list(r.overrides))
    study.set_user_attr("dataset", planned.data.source)
    study.set_user_attr("metric", metric)
    return run.info.run_id


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
    metrics = {
        "trials": outcome.trials,
        "trials_complete": outcome.complete,
        "trials_pruned": outcome.pruned,
        "trials_failed": outcome.failed,
        "epochs_spent": outcome.epochs_spent,
    }
    if outcome.best_value is not None:  # once, under the metric's name: it ranks with the runs
        metrics[f"best_{study.user_attrs.get('metric', 'val_accuracy')}"] = outcome.best_value
    tags = {f"{Tag.BEST_PREFIX}{k}": v for k, v in outcome.best_params.items()}
    if outcome.best_value is not None:
        tags[Tag.BEST_TRIAL] = str(study.best_trial.number)
    store.log(run_id, metrics=metrics, tags=tags, step=outcome.trials)
    with tempfile.TemporaryDirectory(prefix="harness-study-") as tmp:
        for path in study_plots(study, Path(tmp)):
            store.log_artifact(run_id, path)
    store.client.set_terminated(run_id, "FINISHED", end_time=int(time.time() * 1000))  # spans its trials


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
