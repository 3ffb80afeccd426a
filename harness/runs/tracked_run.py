"""One tracked training run: build, open (or reopen) the MLflow run, fit with per-epoch
logging and checkpoints, evaluate, log final metrics and artifacts, end the run.

The model is built (and a backup to resume from loaded) before the run is opened, so a spec
that cannot be built leaves nothing in the store.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from harness import paths
from harness.context import Context, fitted
from harness.entries.diffs import Diff
from harness.entries.yamlio import dump_yaml
from harness.errors import RunFailed
from harness.interrupts import GUARD
from harness.runs.planning import Planned, run_tags
from harness.tracking.names import VAL_CORRECT, Tag

if TYPE_CHECKING:  # MLflow loads with the store, so a run found done answers without it
    from harness.tracking.store import Store


@dataclass(frozen=True)
class RunOptions:
    """How a run is recorded. kind: run, seed, trial or variant (tag harness.kind);
    parent_run_id: the group or study it belongs to; variant: a leave-one-out variant's label;
    save_model: log model.keras (a trial does not); checkpoints: back up the training state
    every epoch (a trial is retried, not resumed)."""

    kind: str = "run"
    parent_run_id: Optional[str] = None
    variant: Optional[str] = None
    run_name: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    callbacks: Sequence[Any] = ()
    save_model: bool = True
    checkpoints: bool = True
    settings: tuple[str, ...] = ()  # the user's overrides apart from the entry (settings.py)
    quiet: bool = False  # a study's cell: the study says in one line what it did, the run says nothing


@dataclass
class Outcome:
    """What a run-ablation did: the run, its status, whether it trained, its final metrics."""

    run_id: str
    experiment_id: str
    status: str
    skipped: bool = False
    resumed_from_epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    children: list[Outcome] = field(default_factory=list)


@dataclass(frozen=True)
class Start:
    """A run about to fit: the built model, the training state it resumes (None for a new
    run), the epochs that state has done, the run it reopens, and the backup identity."""

    model: Any
    resumed: Optional[dict]
    epochs_done: int
    resume_run_id: Optional[str]
    identity: str


def tracked_fit(ctx: Context, planned: Planned, options: RunOptions, resume_run_id: Optional[str] = None) -> Outcome:
    """Build, then open a run (or reopen `resume_run_id` with its whole training state),
    fit with per-epoch logging and checkpoints, evaluate, log final metrics and artifacts,
    and end the run."""
    from harness.training.quiet import load_keras

    store, r = ctx.writable_store, planned.resolved  # a bad store fails before TensorFlow loads
    with GUARD.exits_at_once():  # seconds of import with nothing open: Ctrl-C need not wait for it
        load_keras()
    from harness.training import train

    experiment_id = store.ensure_experiment(planned.experiment)
    start = _build(ctx, planned, resume_run_id)  # bad model settings fail before any run exists
    warning = train.batch_norm_warning(planned.spec, len(planned.data.train))
    if warning:
        ctx.echo(f"warning: {warning}")
    GUARD.check()
    tags = {**run_tags(planned, options.kind, ctx.root, options.settings), **options.tags}
    if options.variant:
        tags[Tag.VARIANT] = options.variant
    name = options.run_name or r.name
    with store.run(experiment_id, name, tags, options.parent_run_id, run_id=start.resume_run_id) as run:
        run_id = run.info.run_id
        if start.resume_run_id is None:
            _log_start(ctx, run_id, planned, warning)
        say = silent if options.quiet else ctx.echo
        say(fitted(_start_line(planned, run_id, start)))
        result = _fit(ctx, planned, options, run_id, start)
        say(f"{r.name}: evaluating {len(planned.data.val)} validation images, writing the model and artifacts")
        metrics = _evaluate_and_record(store, run_id, planned, options, start, result)
    shutil.rmtree(paths.backup_dir(ctx.root, run_id), ignore_errors=True)
    say(fitted(_summary(r.name, run_id, metrics)))
    return Outcome(run_id, experiment_id, "FINISHED", resumed_from_epoch=start.epochs_done, metrics=metrics)


def _build(ctx: Context, planned: Planned, resume_run_id: Optional[str]) -> Start:
    """The compiled model, with the backed-up state of `resume_run_id` put back into it; a
    backup that does not fit is said and the run starts afresh in a new run."""
    from harness.training import checkpoint, train

    model = train.build(planned.spec, planned.data, ctx.root)
    identity = f"{planned.resolved.fingerprint()}/{planned.data.fingerprint}"
    if resume_run_id is None:
        return Start(model, None, 0, None, identity)
    try:
        resumed = checkpoint.load(paths.backup_dir(ctx.root, resume_run_id), identity)
        return Start(model, resumed, checkpoint.restore(resumed, model), resume_run_id, identity)
    except checkpoint.CheckpointError as exc:
        ctx.echo(f"cannot resume run {resume_run_id}: {exc}; training from the start in a new run")
        return Start(model, None, 0, None, identity)


def _log_start(ctx: Context, run_id: str, planned: Planned, warning: Optional[str]) -> None:
    """A new run's params (the whole spec), what its "auto" settings meant here, where its
    backup lives, its warning, and its data as MLflow inputs."""
    from harness.tracking.run_inputs import log_dataset_inputs
    from harness.training import train

    store = ctx.writable_store
    settings = train.resolved_settings(planned.spec, planned.data)
    weights = train.class_weights(planned.spec, planned.data.train.y, planned.data.class_names)
    settings["class_weights"] = "none" if weights is None else json.dumps({k: round(v, 4) for k, v in weights.items()})
    extra = {
        Tag.BACKUP: str(paths.backup_dir(ctx.root, run_id)),
        **{f"{Tag.RESOLVED_PREFIX}{k}": v for k, v in settings.items()},
    }
    if warning:
        extra[Tag.WARNING] = warning
    # The spec, and which pipeline fed it (a param too, so MLflow's compare view shows it).
    params = {**planned.resolved.flat(), "resolved.pipeline": settings["pipeline"]}
    store.log(run_id, params=params, tags=extra)
    log_dataset_inputs(store.client, run_id, planned.data)


def silent(_line: str) -> None:
    """An echo that prints nothing (RunOptions.quiet)."""


def _start_line(planned: Planned, run_id: str, start: Start) -> str:
    r, data = planned.resolved, planned.data
    resuming = start.resume_run_id is not None
    epochs = planned.spec.training.epochs
    return (
        f"{'resuming' if resuming else 'training'} {r.name} [{' > '.join(r.chain[-3:])}] on "
        f"{data.source}: {len(data.train)} train / {len(data.val)} val images, "
        f"up to {epochs} epoch{'s' if epochs != 1 else ''} -> MLflow run {run_id}"
        + (f" (from epoch {start.epochs_done + 1})" if resuming else "")
    )


def _fit(ctx: Context, planned: Planned, options: RunOptions, run_id: str, start: Start):
    """train.fit with the epoch logger, the checkpoint and the caller's callbacks, under
    MLflow's system-metrics sampling when asked for; a NaN loss ends the run FAILED."""
    from harness.runs.epoch_logger import EpochLogger
    from harness.training import checkpoint, train
    from harness.training.callbacks import EpochLine

    store, resuming = ctx.writable_store, start.resume_run_id is not None
    logged_through = _last_logged_epoch(store, run_id) if resuming else 0
    core = train.core_callbacks(planned.spec)
    callbacks = [*core, EpochLogger(store.client, run_id, skip_through=logged_through)]
    if options.checkpoints:
        backup = paths.backup_dir(ctx.root, run_id)
        callbacks.append(checkpoint.Checkpoint(backup, start.identity, core, start.resumed))
    callbacks.extend(options.callbacks)
    verbose = ctx.verbose
    if verbose is None:  # the harness's line per epoch, last: it says the epoch is recorded
        say = silent if options.quiet else ctx.echo
        callbacks.append(EpochLine(say, planned.spec.training.epochs))
        verbose = 0
    sampling = store.system_metrics(run_id, planned.spec.training.system_metrics, resumed=resuming)
    try:
        with sampling:
            return train.fit(
                planned.spec, planned.data, start.model, callbacks, verbose=verbose, initial_epoch=start.epochs_done
            )
    except train.TrainingDiverged as exc:
        raise RunFailed(str(exc), run_id) from None


def _evaluate_and_record(
    store: Store, run_id: str, planned: Planned, options: RunOptions, start: Start, result
) -> dict[str, float]:
    """Evaluate on the validation split, log the final metrics and the artifacts."""
    from harness.training.evaluate import evaluate

    resuming = start.resume_run_id is not None
    history = _full_history(store, run_id, result.history) if resuming else result.history
    evaluation = evaluate(start.model, planned.data.val, planned.data.class_names)
    GUARD.check()
    metrics = final_metrics(planned.spec, history, result, start.model.count_params())
    metrics.update(evaluation.metrics("val", curves=True))
    store.log(run_id, metrics=metrics)
    _log_artifacts(store, run_id, planned, Trained(start.model, history, evaluation), options.save_model)
    GUARD.check()
    return metrics


def _last_logged_epoch(store: Store, run_id: str) -> int:
    points = store.metric_history(run_id, "loss")
    return max((p.step for p in points), default=0)


def _full_history(store: Store, run_id: str, latest: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-epoch history of a resumed run, read back from MLflow (one value per epoch)."""
    history = {}
    for key in latest:
        points = {p.step: p.value for p in store.metric_history(run_id, key)}
        history[key] = [points[s] for s in sorted(points)]
    return history


def final_metrics(spec, history: dict[str, list[float]], result, param_count: int) -> dict[str, float]:
    """Summary metrics of a finished fit, taken at the best epoch of the monitored metric."""
    stop = spec.training.early_stopping
    monitor = stop.monitor if stop else "val_accuracy"
    series = history.get(monitor) or history.get("val_accuracy") or [0.0]
    maximize = stop.mode == "max" if stop and stop.mode != "auto" else "acc" in monitor
    best = series.index(max(series) if maximize else min(series))
    train_accuracy = history.get("accuracy", [0.0])[best]  # at the best epoch: the gap's other side
    return {
        "best_val_accuracy": max(history.get("val_accuracy", [0.0])),
        "best_val_loss": min(history.get("val_loss", [math.inf])),
        "best_epoch": best + 1,
        "train_val_gap": train_accuracy - history.get("val_accuracy", [0.0])[best],
        "epochs_run": len(series),
        "param_count": param_count,
        "train_seconds": result.train_seconds,
        "images_per_second": result.images_per_second,
    }


@dataclass(frozen=True)
class Trained:
    """A finished fit: the model, its per-epoch history, its validation evaluation."""

    model: Any
    history: dict[str, list[float]]
    evaluation: Any


def _log_artifacts(store: Store, run_id: str, planned: Planned, trained: Trained, save_model: bool) -> None:
    from harness.results import plots

    r, model, history, evaluation = planned.resolved, trained.model, trained.history, trained.evaluation
    with tempfile.TemporaryDirectory(prefix="harness-") as tmp:
        folder = Path(tmp)
        spec_doc = {"entry": r.name, "extends": r.parent, "chain": list(r.chain), "overrides": list(r.overrides)}
        spec_doc.update(r.spec.model_dump(mode="json"))
        (folder / "spec.yaml").write_text(dump_yaml(spec_doc))
        (folder / "diff.txt").write_text(_diff_text(planned.diff))
        (folder / "classification_report.txt").write_text(evaluation.report_text)
        lines: list[str] = []
        model.summary(print_fn=lambda line, *a, **k: lines.append(line))
        (folder / "model_summary.txt").write_text("\n".join(lines))
        plots.learning_curves(history, f"{r.name} on {planned.data.source}", folder / "learning_curves.png")
        plots.confusion_matrix(
            evaluation.confusion, planned.data.class_names, f"{r.name}: validation", folder / "confusion_matrix.png"
        )
        np.save(folder / VAL_CORRECT, evaluation.correct.astype(np.uint8))  # a byte an image: paired comparisons
        if save_model:
            model.save(folder / "model.keras")
        store.client.log_artifacts(run_id, str(folder))


CURVE_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")


def log_group_curves(store: Store, group_run_id: str, member_ids: Sequence[str], title: str) -> None:
    """The learning curves of a seed group: the mean over its seed runs, with a band of +/-
    one standard deviation, as the group run's learning_curves.png."""
    from harness.results import plots

    histories: dict[str, list[list[float]]] = {}
    for run_id in member_ids:
        for key in CURVE_METRICS:
            points = sorted(store.metric_history(run_id, key), key=lambda p: p.step)
            histories.setdefault(key, []).append([p.value for p in points])
    with tempfile.TemporaryDirectory(prefix="harness-group-") as tmp:
        path = plots.seed_curves(histories, title, Path(tmp) / "learning_curves.png")
        store.log_artifact(group_run_id, path)


def _diff_text(diff: Diff) -> str:
    head = f"{diff.name} vs {diff.parent or 'schema defaults'}\n"
    return (
        head + "".join(f"{c.key}: {c.old!r} -> {c.new!r}\n" for c in diff.changes)
        if diff.changes
        else head + "no change\n"
    )


def _summary(name: str, run_id: str, metrics: dict[str, float]) -> str:
    return (
        f"{name}: best val_accuracy {metrics['best_val_accuracy']:.4f} at epoch {int(metrics['best_epoch'])}/"
        f"{int(metrics['epochs_run'])}, val macro F1 {metrics['val_macro_f1']:.4f}, train-val gap "
        f"{metrics['train_val_gap']:+.4f}, {metrics['images_per_second']:.0f} images/s, "
        f"{int(metrics['param_count']):,} parameters  (run {run_id})"
    )
