"""run-ablation: one entry -> one MLflow run (or a group of seed runs).

Order matters for "nothing half-written": the spec is resolved, the data loaded and the
model built before the store is opened, so bad input fails with nothing in MLflow.
"""

from __future__ import annotations

import math
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import data as data_module
from . import geometry, paths
from .ablation import Diff, Registry, Resolved, diff_against_parent
from .errors import HarnessError, RunFailed
from .interrupts import GUARD
from .locks import exclusive
from .tracking import TAG, Store, experiment_name
from .yamlio import dump_yaml

Echo = Callable[[str], None]


@dataclass
class Outcome:
    """What a run-ablation did: the run, its status, whether it trained, its final metrics."""

    run_id: str
    experiment_id: str
    status: str
    skipped: bool = False
    resumed_from_epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    children: list["Outcome"] = field(default_factory=list)


@dataclass(frozen=True)
class Planned:
    """A validated run: the resolved entry, its diff, its data; nothing written yet."""

    resolved: Resolved
    diff: Diff
    data: data_module.Dataset

    @property
    def spec(self):
        return self.resolved.spec


def plan(registry: Registry, name: str, overrides: Sequence[str] = ()) -> Planned:
    """Resolve, diff and load the data of an entry, and check that the model fits the images
    and the class weights name real classes. Raises HarnessError on bad input."""
    resolved = registry.resolve(name, list(overrides))
    diff = diff_against_parent(registry, resolved)
    d = resolved.spec.data
    dataset = data_module.load(d.source, d.val_fraction, d.subset, d.seed)
    GUARD.check()
    preflight(resolved, dataset)
    return Planned(resolved, diff, dataset)


def preflight(resolved: Resolved, dataset: data_module.Dataset) -> None:
    """What can only be checked with the data in hand, checked before the store is opened."""
    geometry.check(resolved.spec.model, dataset.input_shape)
    boost = resolved.spec.training.class_weight.boost if resolved.spec.training.class_weight else {}
    for key in boost:
        if not _is_class(key, dataset.class_names):
            where = resolved.source_of("training.class_weight.boost")
            raise HarnessError(
                f"{where}: training.class_weight.boost: no class {key!r} in {dataset.source} "
                f"(classes: {', '.join(dataset.class_names)})"
            )


def _is_class(key, class_names: list[str]) -> bool:
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit() and key not in class_names):
        return 0 <= int(key) < len(class_names)
    return key in class_names


def run_tags(planned: Planned, kind: str, root: Path) -> dict[str, str]:
    """The tags every harness run carries (DESIGN.md, Tracking)."""
    r = planned.resolved
    return {
        f"{TAG}entry": r.name,
        f"{TAG}parent": r.parent or "",
        f"{TAG}chain": " > ".join(r.chain),
        f"{TAG}kind": kind,
        f"{TAG}spec_fingerprint": r.fingerprint(),
        f"{TAG}dataset_fingerprint": planned.data.fingerprint,
        f"{TAG}dataset": planned.data.source,
        f"{TAG}seed": str(r.spec.training.seed),
        f"{TAG}overrides": " ".join(r.overrides),
        f"{TAG}git_commit": git_commit(root),
        "mlflow.note.content": r.entry.description,
    }


def git_commit(root: Path) -> str:
    """HEAD of the project, with -dirty when ablations/ or harness/ have local changes."""
    git = ["git", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null"]  # run no repository hook
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "ablations", "harness"], cwd=root, capture_output=True, text=True, timeout=5
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_ablation(
    root: Path,
    name: str,
    overrides: Sequence[str] = (),
    *,
    seeds: Optional[Sequence[int]] = None,
    force: bool = False,
    tracking_uri: Optional[str] = None,
    echo: Echo = print,
    verbose: Any = None,
    variant: Optional[str] = None,
) -> Outcome:
    """Train entry `name` and record it; with `seeds`, a group run with one child per seed.
    A spec and dataset that already have a FINISHED run are not trained again unless `force`.
    `variant` names a leave-one-out variant: kind `ablation`, tag harness.variant."""
    registry = Registry(root)
    planned = plan(registry, name, overrides)
    if seeds:
        return _run_group(root, registry, planned, list(seeds), force, tracking_uri, echo, verbose, variant)
    store = open_for_writing(root, tracking_uri, echo)
    experiment_id = store.experiment_id(_experiment(planned))
    return _run_one(root, store, experiment_id, planned, "ablation" if variant else "run", None, force, echo, verbose, variant)


def _experiment(planned: Planned) -> str:
    return experiment_name(planned.data.source, planned.spec.data.subset)


def open_for_writing(root: Path, tracking_uri: Optional[str], echo: Echo) -> Store:
    """The store for a command that writes runs, with the runs of dead processes ended first."""
    store = Store(root, tracking_uri)
    for run_id in store.reap_orphans():
        echo(f"marked run {run_id} FAILED: its process died while it was RUNNING")
    return store


def _run_one(
    root: Path,
    store: Store,
    experiment_id: str,
    planned: Planned,
    kind: str,
    parent_run_id: Optional[str],
    force: bool,
    echo: Echo,
    verbose: Any,
    variant: Optional[str] = None,
) -> Outcome:
    r = planned.resolved
    identity = {
        f"{TAG}spec_fingerprint": r.fingerprint(),
        f"{TAG}dataset_fingerprint": planned.data.fingerprint,
    }
    lock = paths.run_lock(root, f"{r.fingerprint()}-{planned.data.fingerprint}")
    waiting = lambda pid: echo(f"{r.name}: process {pid} is training the same spec on the same data; waiting for it")
    with exclusive(lock, on_wait=waiting):
        if not force:
            done = _finished(store, experiment_id, identity, variant)
            if done is not None:
                echo(
                    f"{r.name}: already done in run {done.info.run_id} "
                    f"(same spec {r.fingerprint()} and data {planned.data.fingerprint}); --force runs it again"
                )
                metrics = dict(done.data.metrics)
                return Outcome(done.info.run_id, experiment_id, "FINISHED", skipped=True, metrics=metrics)
        resume = None if force else _resumable(store, root, experiment_id, identity, variant)
        return tracked_fit(
            root, store, experiment_id, planned, kind, parent_run_id, echo=echo, verbose=verbose, resume_run_id=resume,
            extra_tags={f"{TAG}variant": variant} if variant else None, run_name=f"{r.name} {variant}" if variant else None,
        )


def _finished(store: Store, experiment_id: str, identity: dict[str, str], variant: Optional[str]):
    """The latest FINISHED plain run or seed child of this spec and data (a trial, or a run
    of another variant, does not count: compare would not find it as this entry's)."""
    clauses = ["attributes.status = 'FINISHED'", *(f"tags.`{k}` = '{v}'" for k, v in identity.items())]
    runs = store.runs([experiment_id], " and ".join(clauses), max_results=50)
    return next((run for run in runs if _same_cell(run, variant)), None)


def _same_cell(run, variant: Optional[str]) -> bool:
    """Whether `run` trained what a run-ablation (of `variant`, if any) would: a plain run
    or a seed child, of the same variant."""
    tags = run.data.tags
    kinds = ("ablation", "seed") if variant else ("run", "seed")
    return tags.get(f"{TAG}kind") in kinds and tags.get(f"{TAG}variant", "") == (variant or "")


def tracked_fit(
    root: Path,
    store: Store,
    experiment_id: str,
    planned: Planned,
    kind: str,
    parent_run_id: Optional[str],
    *,
    echo: Echo,
    verbose: Any,
    resume_run_id: Optional[str] = None,
    extra_callbacks: Sequence[Any] = (),
    extra_tags: Optional[dict[str, str]] = None,
    run_name: Optional[str] = None,
    full_artifacts: bool = True,
    checkpoints: bool = True,
) -> Outcome:
    """Build, then open a run (or reopen `resume_run_id` with its whole training state),
    fit with per-epoch logging and checkpoints, evaluate, log final metrics and artifacts,
    and end the run."""
    from . import checkpoint, train
    from .epoch_logger import EpochLogger
    from .evaluate import evaluate

    r = planned.resolved
    model = train.build(planned.spec, planned.data)  # bad model settings fail before any run exists
    identity = f"{r.fingerprint()}/{planned.data.fingerprint}"
    resumed, epochs_done = None, 0
    if resume_run_id is not None:
        try:
            resumed = checkpoint.load(paths.backup_dir(root, resume_run_id), identity)
            epochs_done = checkpoint.restore(resumed, model)
        except checkpoint.CheckpointError as exc:
            echo(f"cannot resume run {resume_run_id}: {exc}; training from the start in a new run")
            resumed, resume_run_id = None, None
    warning = train.batch_norm_warning(planned.spec, len(planned.data.train))
    if warning:
        echo(f"warning: {warning}")
    GUARD.check()
    tags = {**run_tags(planned, kind, root), **(extra_tags or {})}
    with store.run(experiment_id, run_name or r.name, tags, parent_run_id, run_id=resume_run_id) as run:
        run_id = run.info.run_id
        backup_dir = paths.backup_dir(root, run_id)
        if resume_run_id is None:
            settings = train.resolved_settings(planned.spec, len(planned.data.train))
            extra = {f"{TAG}backup": str(backup_dir), **{f"{TAG}resolved.{k}": v for k, v in settings.items()}}
            if warning:
                extra[f"{TAG}warning"] = warning
            store.log(run_id, params=r.flat(), tags=extra)
        logged_through = _last_logged_epoch(store, run_id) if resume_run_id else 0
        echo(
            f"{'resuming' if resume_run_id else 'training'} {r.name} [{' > '.join(r.chain[-3:])}] on "
            f"{planned.data.source}: {len(planned.data.train)} train / {len(planned.data.val)} val images, "
            f"up to {planned.spec.training.epochs} epochs -> MLflow run {run_id}"
            + (f" (from epoch {epochs_done + 1})" if resume_run_id else "")
        )
        core = train.core_callbacks(planned.spec)
        callbacks = [EpochLogger(store.client, run_id, skip_through=logged_through)]
        if checkpoints:
            callbacks.append(checkpoint.Checkpoint(backup_dir, identity, core, resumed))
        callbacks.extend(extra_callbacks)
        try:
            result = train.fit(planned.spec, planned.data, model, callbacks, verbose=verbose,
                               initial_epoch=epochs_done, core=core)
        except train.TrainingDiverged as exc:
            raise RunFailed(str(exc), run_id) from None
        echo(f"{r.name}: evaluating {len(planned.data.val)} validation images, writing the model and artifacts")
        history = _full_history(store, run_id, result.history) if resume_run_id else result.history
        evaluation = evaluate(model, planned.data.val, planned.data.class_names)
        GUARD.check()
        metrics = final_metrics(planned.spec, history, result, model.count_params())
        metrics.update(evaluation.metrics("val", final=True))
        store.log(run_id, metrics=metrics)
        _log_artifacts(store, run_id, planned, model, history, evaluation, full_artifacts)
        GUARD.check()
    shutil.rmtree(backup_dir, ignore_errors=True)
    echo(_summary(r.name, run_id, metrics))
    return Outcome(run_id, experiment_id, "FINISHED", resumed_from_epoch=epochs_done, metrics=metrics)


def _resumable(store: Store, root: Path, experiment_id: str, identity: dict[str, str], variant: Optional[str]) -> Optional[str]:
    """The latest FAILED or KILLED run of this spec and data that left a backup, if any."""
    from .checkpoint import has_state

    clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in identity.items())
    for run in store.runs([experiment_id], f"attributes.status != 'FINISHED' and {clauses}", max_results=20):
        ended = run.info.status in ("FAILED", "KILLED")
        if ended and _same_cell(run, variant) and has_state(paths.backup_dir(root, run.info.run_id)):
            return run.info.run_id
    return None


def _last_logged_epoch(store: Store, run_id: str) -> int:
    points = store.client.get_metric_history(run_id, "loss")
    return max((p.step for p in points), default=0)


def _full_history(store: Store, run_id: str, latest: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-epoch history of a resumed run, read back from MLflow (one value per epoch)."""
    history = {}
    for key in latest:
        points = {p.step: p.value for p in store.client.get_metric_history(run_id, key)}
        history[key] = [points[s] for s in sorted(points)]
    return history


def final_metrics(spec, history: dict[str, list[float]], result, param_count: int) -> dict[str, float]:
    """Summary metrics of a finished fit, taken at the best epoch of the monitored metric."""
    stop = spec.training.early_stopping
    monitor = stop.monitor if stop else "val_accuracy"
    series = history.get(monitor) or history.get("val_accuracy") or [0.0]
    maximize = stop.mode == "max" if stop and stop.mode != "auto" else "acc" in monitor
    best = series.index(max(series) if maximize else min(series))
    train_accuracy = history.get("accuracy", [0.0])[best]
    return {
        "best_val_accuracy": max(history.get("val_accuracy", [0.0])),
        "best_val_loss": min(history.get("val_loss", [math.inf])),
        "best_epoch": best + 1,
        "train_accuracy": train_accuracy,
        "train_loss": history.get("loss", [0.0])[best],
        "train_val_gap": train_accuracy - history.get("val_accuracy", [0.0])[best],
        "epochs_run": len(series),
        "param_count": param_count,
        "train_seconds": result.train_seconds,
        "images_per_second": result.images_per_second,
    }


def _log_artifacts(store: Store, run_id: str, planned: Planned, model, history, evaluation, full: bool) -> None:
    from . import plots

    r = planned.resolved
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
        if full:
            model.save(folder / "model.keras")
        store.client.log_artifacts(run_id, str(folder))


def _diff_text(diff: Diff) -> str:
    head = f"{diff.name} vs {diff.parent or 'schema defaults'}\n"
    return head + "".join(f"{c.key}: {c.old!r} -> {c.new!r}\n" for c in diff.changes) if diff.changes else head + "no change\n"


def _summary(name: str, run_id: str, metrics: dict[str, float]) -> str:
    return (
        f"{name}: best val_accuracy {metrics['best_val_accuracy']:.4f} at epoch {int(metrics['best_epoch'])}/"
        f"{int(metrics['epochs_run'])}, val macro F1 {metrics['val_macro_f1']:.4f}, train-val gap "
        f"{metrics['train_val_gap']:+.4f}, {metrics['images_per_second']:.0f} images/s, "
        f"{int(metrics['param_count']):,} parameters  (run {run_id})"
    )


# --------------------------------------------------------------------------- seeds


def _run_group(
    root: Path,
    registry: Registry,
    planned: Planned,
    seeds: list[int],
    force: bool,
    tracking_uri: Optional[str],
    echo: Echo,
    verbose: Any,
    variant: Optional[str] = None,
) -> Outcome:
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"--seeds: repeated seed in {seeds}")
    r = planned.resolved
    per_seed = [plan(registry, r.name, [*r.overrides, f"training.seed={s}"]) for s in seeds]
    store = open_for_writing(root, tracking_uri, echo)
    experiment_id = store.experiment_id(_experiment(planned))
    tags = run_tags(planned, "ablation" if variant else "group", root)
    tags[f"{TAG}seeds"] = ",".join(str(s) for s in seeds)
    if variant:
        tags[f"{TAG}variant"] = variant
    tags[f"{TAG}spec_fingerprint"] = _group_fingerprint(r, seeds)
    identity = {k: tags[k] for k in (f"{TAG}spec_fingerprint", f"{TAG}dataset_fingerprint", f"{TAG}kind")}
    if not force:
        done = store.find_finished(experiment_id, identity)
        if done is not None:
            echo(f"{r.name}: seeds {seeds} already done in group run {done.info.run_id}; --force runs them again")
            return Outcome(done.info.run_id, experiment_id, "FINISHED", skipped=True, metrics=dict(done.data.metrics))
    title = f"{r.name} {variant}" if variant else r.name
    with store.run(experiment_id, f"{title} x{len(seeds)} seeds", tags) as group:
        store.log(group.info.run_id, params={k: v for k, v in r.flat().items() if k != "training.seed"})
        children = []
        for seed, seeded in zip(seeds, per_seed):
            GUARD.check()
            echo(f"--- seed {seed}")
            children.append(
                _run_one(root, store, experiment_id, seeded, "seed", group.info.run_id, True, echo, verbose, variant)
            )
        stats = seed_statistics([c.metrics for c in children])
        store.log(group.info.run_id, metrics=stats)
    mean, std = stats.get("best_val_accuracy_mean", 0.0), stats.get("best_val_accuracy_std", 0.0)
    echo(f"{r.name}: best val_accuracy {mean:.4f} +/- {std:.4f} (n={len(seeds)})  (group run {group.info.run_id})")
    return Outcome(group.info.run_id, experiment_id, "FINISHED", metrics=stats, children=children)


def _group_fingerprint(resolved: Resolved, seeds: list[int]) -> str:
    import hashlib

    return hashlib.sha256(f"{resolved.fingerprint()}|{sorted(seeds)}".encode()).hexdigest()[:16]


def seed_statistics(runs: list[dict[str, float]]) -> dict[str, float]:
    """mean, std (sample, n-1) and n of every final metric present in all runs."""
    keys = set.intersection(*(set(m) for m in runs)) if runs else set()
    stats: dict[str, float] = {}
    for key in sorted(keys):
        values = [float(m[key]) for m in runs]
        stats[f"{key}_mean"] = statistics.fmean(values)
        stats[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        stats[f"{key}_n"] = float(len(values))
    return stats

