"""The queue of a `harness study`, kept in an Optuna study: its cells (an entry or variant,
a seed) and, once every cell has ended, one more task, the final steps (study.final).

Both are trials that workers claim through Optuna's storage: the journal file on one
machine, PostgreSQL across machines, where Optuna's heartbeat fails the trial of a dead
worker and queues it again (on the journal file, the next worker on the host sees the dead
process and does the same). An interrupted worker queues its trial again itself. Each cell
lands as one FINISHED MLflow run, a child of its entry's seed group, itself a child of the
study's run; a group is finished by whoever finds all its cells ended, so a worker killed
between its cell and its group leaves nothing that the next one cannot repair.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from harness.context import Context
from harness.entries.registry import Registry
from harness.errors import HarnessError, RunFailed
from harness.interrupts import GUARD
from harness.runs import runner
from harness.runs.planning import Planned, plan
from harness.runs.tracked_run import RunOptions
from harness.study.cells import Cell, StudyPlan, check_same_specs, plan_cells
from harness.tracking.names import Tag
from harness.training.geometry import CannotBuild
from harness.tuning.storage import fail_stale_trials, heartbeat_seconds, open_storage, study_lock

HISTORY_RUN = "mlflow_history_run_id"  # study user attributes
GROUPS = "mlflow_group_runs"
CELLS = "cells"
CANNOT_BUILD = "cannot_build"  # group -> why its cells were left out
FINAL = "final_steps"  # user attribute of the trial that stands for the study's final steps
FINAL_DONE = "final_steps_done"  # study user attribute: who did them, and the links they printed
QUEUE_METRIC = "best_val_accuracy"  # a cell's value
ABOUT_QUEUE = (  # what optuna-dashboard shows of a study's queue, among its user attributes
    "the work queue of `harness study`: one trial per cell (its value: the cell's best_val_accuracy), "
    "the last for the final steps (its value: the selected entry's mean over seeds); no parameters are searched"
)
RETRY_OF = "retry_of"  # user attribute of a trial queued again for an interrupted one


@dataclass
class Progress:
    """Counts for the running total line, and the time left: each cell waiting weighted by
    its cost (Cell.cost), at the pace this worker measured (seconds per unit of cost)."""

    total: int  # cells planned when the count began (a study with --seeds auto may add more)
    started: float = field(default_factory=time.monotonic)
    trained: list[tuple[float, float]] = field(default_factory=list)  # (seconds, cost) of the cells trained here

    def line(self, study) -> str:
        self.total = max(self.total, len(study.user_attrs.get(CELLS, [])))
        cells = [t for t in _live(study) if "cell" in t.user_attrs]
        done = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in cells)
        running = [t for t in cells if t.state == TrialState.RUNNING]
        waiting = [t for t in cells if t.state == TrialState.WAITING]
        elapsed = time.monotonic() - self.started
        left = self.seconds_left(
            [t.user_attrs.get("cost") for t in waiting], [t.user_attrs.get("cost") for t in running]
        )
        eta = f", about {_duration(left)} left for one worker" if left else ""
        return (
            f"cells: {done}/{self.total} done, {len(running)} running, {self.total - done - len(running)} waiting; "
            f"{_duration(elapsed)} elapsed{eta}"
        )

    def seconds_left(self, waiting: list, running: list) -> float:
        """The cells' costs at the measured pace (a running cell counts half); a cell of
        unknown cost, or any before a cell of known cost has trained, at the mean time per cell."""
        if not self.trained:
            return 0.0
        measured = self.trained[1:] or self.trained  # the first cell also paid TensorFlow's start-up
        per_cell = sum(s for s, _ in measured) / len(measured)
        known = [(s, c) for s, c in measured if c]
        pace = sum(s for s, _ in known) / sum(c for _, c in known) if known else None

        def seconds(cost) -> float:
            return pace * float(cost) if pace is not None and cost else per_cell

        return sum(seconds(c) for c in waiting) + sum(seconds(c) for c in running) / 2


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def open_study(ctx: Context, plan_: StudyPlan, storage_url: Optional[str], name: str = ""):
    """(study, storage, cells, experiment label): the study created on first use (its cells
    enqueued, its MLflow runs made), or joined; a worker whose specs differ is refused."""
    registry = Registry(ctx.root)
    first = plan(registry, plan_.target, list(plan_.overrides))  # data loaded and checked once
    cells, unbuildable = buildable_cells(registry, plan_, first.data)
    for group, reason in unbuildable.items():
        ctx.echo(f"{group}: {reason} (not a cell of the study)")
    storage, label = open_storage(ctx.root, storage_url)
    study_name = plan_.name(first.experiment) + (f"/{name}" if name else "")
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True)
    with study_lock(ctx.root, storage, study_name):
        recorded = study.user_attrs.get(CELLS)
        if recorded is None:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, and the only way to name it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([QUEUE_METRIC])  # as optuna-dashboard names its objective
            study.set_user_attr("about", ABOUT_QUEUE)
            study.set_user_attr(CANNOT_BUILD, unbuildable)
            _create(ctx, study, cells, first=first, settings=plan_.overrides)
        else:
            check_same_specs(cells, recorded)
            if study.direction != optuna.study.StudyDirection.MAXIMIZE:  # made before the queue named its metric
                ctx.echo("note: this study was made minimizing, so optuna-dashboard lists its best cells last")
    ctx.echo(f"study {study_name} ({label}): {len(cells)} cells")
    return study, storage, cells, first


def buildable_cells(registry: Registry, plan_: StudyPlan, data) -> tuple[list[Cell], dict[str, str]]:
    """The study's cells whose model can be built on the data, each with its cost (what the
    time left is weighted by), and why the others cannot (a leave-one-out variant of a
    padding step, say): those are rows with a reason, not runs."""
    from harness.training.geometry import check, multiply_adds

    input_shape = data.input_shape
    kept, unbuildable, built = [], {}, set()
    for cell in plan_cells(registry, plan_):
        if cell.group in unbuildable:
            continue
        resolved = registry.resolve(cell.entry, [*plan_.overrides, *cell.variant_overrides])
        try:
            check(resolved.spec.model, input_shape)
        except CannotBuild as exc:
            unbuildable[cell.group] = str(exc)
            continue
        if resolved.spec.model.builder is not None and resolved.fingerprint() not in built:
            from harness.training import builders  # each builder's model built once, before any cell trains

            builders.build(resolved.spec.model, input_shape, len(data.class_names), registry.root, resolved.source_of)
            built.add(resolved.fingerprint())
        per_image = multiply_adds(resolved.spec.model, input_shape, len(data.class_names)) or 0
        kept.append(replace(cell, cost=float(per_image * len(data.train) * resolved.spec.training.epochs)))
    return kept, unbuildable


def _create(ctx: Context, study, cells: list[Cell], *, first: Planned, settings: tuple[str, ...]) -> None:
    """Make the MLflow runs, the study's and one seed group per entry or variant (SCHEDULED
    until their cells end), then enqueue every cell. Each run is made through Store.run, so
    a crash part-way leaves no run RUNNING for good."""
    from harness.runs.planning import run_tags
    from harness.tracking.run_inputs import log_dataset_inputs

    store = ctx.writable_store
    experiment_id = store.ensure_experiment(first.experiment)
    tags = run_tags(first, "history", ctx.root, settings)
    tags.update({Tag.STUDY: study.study_name, Tag.CELLS: str(len(cells))})
    with store.run(experiment_id, f"{first.resolved.name} study", tags, ends="SCHEDULED") as history:
        log_dataset_inputs(store.client, history.info.run_id, first.data)
    for index, cell in enumerate(cells):
        study.enqueue_trial({}, user_attrs=cell.to_attrs(index))
    study.set_user_attr(HISTORY_RUN, history.info.run_id)
    study.set_user_attr(GROUPS, {})  # each made when its first cell starts (group_run)
    study.set_user_attr(CELLS, [cell.to_attrs(i) for i, cell in enumerate(cells)])


def group_run(ctx: Context, study, storage, cell: Cell, planned: Planned, settings: tuple[str, ...]) -> str:
    """The run of the cell's seed group, made (under the study's lock: once, whichever
    worker comes first) when its first cell starts, so that its start and end span its
    cells' training rather than the whole study's."""
    found = study.user_attrs.get(GROUPS, {}).get(cell.group)
    if found:
        return found
    with study_lock(ctx.root, storage, study.study_name):
        groups = dict(study.user_attrs.get(GROUPS, {}))
        if cell.group not in groups:
            groups[cell.group] = _make_group(ctx, study, cell, planned, settings)
            study.set_user_attr(GROUPS, groups)
    return groups[cell.group]


def _make_group(ctx: Context, study, cell: Cell, planned: Planned, settings: tuple[str, ...]) -> str:
    """A seed group's run under the study run, SCHEDULED until its cells end (finish_groups)."""
    from harness.runs.planning import run_tags
    from harness.tracking.run_inputs import log_dataset_inputs

    store = ctx.writable_store
    history = study.user_attrs[HISTORY_RUN]
    experiment_id = store.get_run(history).info.experiment_id
    resolved = Registry(ctx.root).resolve(cell.entry, [*settings, *cell.variant_overrides])
    kind = "variant" if cell.variant else "group"
    tags = run_tags(Planned(resolved, planned.diff, planned.data), kind, ctx.root, settings)
    del tags[Tag.SEED]
    tags[Tag.STUDY] = study.study_name
    if cell.variant:
        tags[Tag.VARIANT] = cell.variant
    seeds = sorted({int(c["seed"]) for c in study.user_attrs.get(CELLS, []) if Cell.from_attrs(c).group == cell.group})
    tags[Tag.SEEDS] = ",".join(map(str, seeds))
    with store.run(experiment_id, f"{cell.group} x{len(seeds)} seeds", tags, history, ends="SCHEDULED") as run:
        store.log(run.info.run_id, params={k: v for k, v in resolved.flat().items() if k != "training.seed"})
        log_dataset_inputs(store.client, run.info.run_id, planned.data)
    return run.info.run_id


def claim(study, storage):
    """The next waiting trial of the study, now RUNNING and this worker's (a cell, or the final
    steps), or None when nothing waits. First the trials of dead workers are failed and
    queued again (RDB: Optuna's heartbeat; journal file: their pid on this host)."""
    fail_stale_trials(study, storage)
    with warnings.catch_warnings():  # "experimental", and "heartbeat ... used with Study.optimize":
        warnings.simplefilter("ignore")  # a study's queue is Optuna's ask-and-tell, by design
        if isinstance(storage, RDBStorage):
            optuna.storages.fail_stale_trials(study)
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return None
        trial = study.ask()
    if "cell" not in trial.user_attrs and not trial.user_attrs.get(FINAL):  # another worker took the last
        trial.set_user_attr("no_cell", True)
        study.tell(trial, state=TrialState.FAIL)
        return None
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    return trial


def run_cell(ctx: Context, study, trial, *, storage, settings: tuple[str, ...], progress: Progress) -> int:
    """Train the trial's cell as a seed run of its group; 1 if this worker trained it, 0 if
    it was reused or failed (its reason kept on the trial). Ctrl-C queues it again."""
    cell = Cell.from_attrs(trial.user_attrs)
    started = time.monotonic()
    with heartbeat(storage, trial), requeued_on_interrupt(study, trial):
        try:
            outcome = _train(ctx, study, storage, cell, settings)
        except (CannotBuild, RunFailed, HarnessError) as exc:
            trial.set_user_attr("reason", str(exc)[:500])
            study.tell(trial, state=TrialState.FAIL)
            ctx.echo(f"cell {cell.label}: failed: {exc} | {progress.line(study)}")
            finish_groups(ctx, study)
            return 0
        trial.set_user_attr("run_id", outcome.run_id)
        value = float(outcome.metrics.get("best_val_accuracy", float("nan")))
        study.tell(trial, value)
    seconds = time.monotonic() - started
    if not outcome.skipped:
        progress.trained.append((seconds, cell.cost))
    how = "reused" if outcome.skipped else _duration(seconds)
    if outcome.resumed_from_epoch:
        how += f", resumed from its backup at epoch {outcome.resumed_from_epoch + 1}"
    ctx.echo(f"cell {cell.label}: best_val_accuracy {value:.4f} ({how}) | {progress.line(study)}")
    finish_groups(ctx, study)
    return 0 if outcome.skipped else 1


def _train(ctx: Context, study, storage, cell: Cell, settings: tuple[str, ...]):
    registry = Registry(ctx.root)
    planned = plan(registry, cell.entry, [*settings, *cell.variant_overrides, f"training.seed={cell.seed}"])
    options = RunOptions(
        kind="seed",
        parent_run_id=group_run(ctx, study, storage, cell, planned, settings),
        variant=cell.variant,
        run_name=cell.label,
        settings=tuple(settings),
        quiet=True,
    )
    return runner.run_once(ctx, planned, options)


@contextlib.contextmanager
def requeued_on_interrupt(study, trial):
    """Ctrl-C or SIGTERM while the trial runs: it is queued again (for the next worker, or
    the same command run again) and this one failed, then the interrupt goes on."""
    try:
        with GUARD.holding():
            yield
    except KeyboardInterrupt:
        kept = {k: v for k, v in trial.user_attrs.items() if k not in ("host", "pid")}
        study.enqueue_trial({}, user_attrs={**kept, RETRY_OF: trial.number})
        study.tell(trial, state=TrialState.FAIL)
        raise


@contextlib.contextmanager
def heartbeat(storage, trial):
    """On an RDB storage, prove every few seconds (heartbeat_seconds) that this worker is
    alive: a trial whose heartbeat stops is failed and queued again (fail_stale_trials)."""
    if not isinstance(storage, RDBStorage):
        yield
        return
    stop, every = threading.Event(), heartbeat_seconds()

    def beat():
        while not stop.wait(every):
            with contextlib.suppress(Exception):
                storage.record_heartbeat(trial._trial_id)

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def _live(study) -> list:
    """The trials that stand for something now: retried ones replaced by their retries."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials} | {t.system_attrs.get("failed_trial") for t in trials}
    return [t for t in trials if t.number not in retried]


def group_trials(study, group: str) -> list:
    """The live trials of a group's cells."""
    return [t for t in _live(study) if t.user_attrs.get("cell") is not None and _group_of(t) == group]


def _group_of(trial) -> str:
    variant = trial.user_attrs.get("variant")
    return f"{trial.user_attrs['entry']} {variant}" if variant else trial.user_attrs["entry"]


def finish_groups(ctx: Context, study) -> None:
    """Every seed group whose cells have all ended and whose run still waits: its seed
    statistics, curves and members, and FINISHED (FAILED if no cell finished). Idempotent:
    any worker may call it, and the final steps call it first."""
    for group in study.user_attrs.get(GROUPS, {}):
        _finish_group(ctx, study, group)


def _finish_group(ctx: Context, study, group: str) -> None:
    from harness.results.stats import seed_statistics
    from harness.runs.tracked_run import log_group_curves

    trials = group_trials(study, group)
    if not trials or any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
        return
    store = ctx.writable_store
    run_id = study.user_attrs[GROUPS][group]
    if store.get_run(run_id).info.status in ("FINISHED", "FAILED"):
        return
    members = [t.user_attrs["run_id"] for t in trials if t.state == TrialState.COMPLETE and "run_id" in t.user_attrs]
    if not members:
        reasons = {t.user_attrs.get("reason", "") for t in trials}
        store.client.set_tag(run_id, Tag.REASON, "; ".join(sorted(r for r in reasons if r))[:5000])
        store.client.set_terminated(run_id, "FAILED")
        return
    stats = seed_statistics([store.get_run(m).data.metrics for m in members])
    store.log(run_id, metrics=stats, tags={Tag.MEMBERS: ",".join(members)})
    log_group_curves(store, run_id, members, group)
    store.client.set_terminated(run_id, "FINISHED")


def finished_groups(ctx: Context, study) -> dict[str, str]:
    """The run id of every seed group of the study that FINISHED, by group name."""
    store = ctx.writable_store
    groups: dict[str, str] = study.user_attrs.get(GROUPS, {})
    return {g: r for g, r in groups.items() if store.get_run(r).info.status == "FINISHED"}


def own_runs_scope(plan_: StudyPlan, first: Planned, finished: dict[str, str], chain: list[str], metric: str):
    """The comparison scope of the study's history on its own runs only: each entry of the
    chain pinned to its finished group, or to none ("") when the study has none for it."""
    from harness.results.compare import Scope

    pinned = tuple((entry, finished.get(entry, "")) for entry in chain)
    return Scope(first.data.source, first.spec.data.subset, metric, settings=plan_.overrides, pinned=pinned)


def status_rows(study, cells: list[Cell]) -> list[tuple[str, str]]:
    """(cell label, state) of every cell: done, running, waiting, failed (with its reason)."""
    by_cell: dict[int, Any] = {}
    for trial in _live(study) if study is not None else []:
        index = trial.user_attrs.get("cell")
        if index is not None:
            by_cell[index] = trial
    rows = []
    for index, cell in enumerate(cells):
        trial = by_cell.get(index)
        if trial is None:
            rows.append((cell.label, "to do"))
        elif trial.state == TrialState.COMPLETE:
            rows.append((cell.label, f"done (best_val_accuracy {trial.value:.4f})"))
        elif trial.state == TrialState.FAIL:
            rows.append((cell.label, f"failed: {trial.user_attrs.get('reason', 'worker died')}"))
        else:
            rows.append((cell.label, trial.state.name.lower()))
    return rows


def cells_ended(study) -> bool:
    """Whether every cell has ended (finished or failed for good): none waits or runs."""
    states = [t.state for t in _live(study) if "cell" in t.user_attrs]
    return bool(states) and not any(s in (TrialState.WAITING, TrialState.RUNNING) for s in states)


def final_state(study) -> Optional[TrialState]:
    """The state of the final steps' live trial (None before it was queued)."""
    finals = [t for t in _live(study) if t.user_attrs.get(FINAL)]
    return finals[-1].state if finals else None


def queue_final_steps(ctx: Context, study, storage) -> bool:
    """Once every cell has ended, queue the final steps as one more trial, unless one waits,
    runs or has finished (a failed one is queued again: a rerun tries again). Returns
    whether this call queued it."""
    if not cells_ended(study):
        return False
    with study_lock(ctx.root, storage, study.study_name):
        if final_state(study) in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE):
            return False
        study.enqueue_trial({}, user_attrs={FINAL: True})
        return True
