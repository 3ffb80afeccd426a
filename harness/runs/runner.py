"""run-ablation: one entry -> one MLflow run, or a group run with one child per seed.

A spec and dataset that already have a FINISHED run are not trained again (unless forced);
a FAILED or KILLED one with a backup is resumed; two identical commands at once train once.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from harness import paths
from harness.context import Context, fitted
from harness.entries.registry import Registry, Resolved
from harness.errors import HarnessError
from harness.interrupts import GUARD
from harness.locks import exclusive
from harness.results.stats import format_summary, seed_statistics
from harness.runs.planning import Planned, plan, run_tags
from harness.runs.tracked_run import Outcome, RunOptions, log_group_curves, silent, tracked_fit
from harness.tracking.names import Tag, run_link

if TYPE_CHECKING:
    from harness.tracking.protocol import RunStore
    from harness.tracking.store import Store

MAX_SEEDS = 1000  # a group of more runs than this is a typo


SEED_COUNT = re.compile(r"[0-9]{1,6}")  # digits only: Python's int() would take '1_0' and ' 3'
SEED_LIST = re.compile(r"[0-9]{1,10}(,[0-9]{1,10})*,|[0-9]{1,10}(,[0-9]{1,10})+")  # a comma makes it a list


def parse_seeds(text: Optional[str]) -> Optional[list[int]]:
    """`3` -> [0, 1, 2]; `0,1,7` -> [0, 1, 7]; `7,` -> [7] (one seed: a bare 7 is a count).
    Seeds are 0 .. 2**32-1, none repeated."""
    from harness.entries.spec import SEED_MAX

    if text is None:
        return None
    usage = f"--seeds {text!r}: expected a count from 1 to {MAX_SEEDS} (3) or a list (0,1,7; one seed: 7,)"
    if SEED_LIST.fullmatch(text):
        seeds = [int(part) for part in text.split(",") if part]
    elif SEED_COUNT.fullmatch(text) and 1 <= int(text) <= MAX_SEEDS:
        seeds = list(range(int(text)))
    else:
        raise HarnessError(usage)
    if not seeds or len(seeds) > MAX_SEEDS:
        raise HarnessError(f"--seeds {text!r}: give 1 to {MAX_SEEDS} seeds")
    bad = [s for s in seeds if not 0 <= s <= SEED_MAX]
    if bad:
        raise HarnessError(f"--seeds {text!r}: seed {bad[0]} is outside 0..{SEED_MAX}")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"--seeds {text!r}: a seed is repeated")
    return seeds


@dataclass(frozen=True)
class Variant:
    """A leave-one-out variant of an entry: its label ('without adam') and the overrides
    that put the step's keys back to the parent's values (not the run's settings)."""

    label: str
    overrides: tuple[str, ...] = ()


def run_ablation(
    ctx: Context,
    name: str,
    overrides: Sequence[str] = (),
    *,
    seeds: Optional[Sequence[int]] = None,
    force: bool = False,
    variant: Optional[Variant] = None,
) -> Outcome:
    """Train entry `name` with `overrides` (its settings) and record it; with `seeds`, a
    group run with one child per seed, reusing any seed already finished. A spec and dataset
    that already have a FINISHED run are not trained again unless `force`. `variant` makes
    it a leave-one-out variant (kind `variant`, tag harness.variant)."""
    registry = Registry(ctx.root)
    extra = list(variant.overrides) if variant else []
    planned = plan(registry, name, [*overrides, *extra])
    if seeds:
        return _run_group(ctx, registry, planned, list(seeds), force=force, variant=variant, settings=tuple(overrides))
    label = variant.label if variant else None
    options = RunOptions(
        kind="variant" if variant else "run",
        variant=label,
        run_name=f"{planned.resolved.name} {label}" if variant else None,
        settings=tuple(overrides),
    )
    outcome = run_once(ctx, planned, options, force=force)
    ctx.echo(f"run: {run_link(ctx.store_uri, outcome.experiment_id, outcome.run_id)}")
    return outcome


def say_next(ctx: Context, name: str, overrides: Sequence[str]) -> None:
    """What to try after a run of a step: the command that gives it a verdict against its
    parent (both over seeds, as many as the verdict needs), and compare to read it."""
    r = Registry(ctx.root).resolve(name, overrides)
    if r.parent is None:
        return
    options = "".join(f" --set {shlex.quote(text)}" for text in overrides)
    ctx.echo(fitted(f"next: harness run-ablation {r.name} --seeds auto{options}", command=True))
    why = f"({r.name} and its parent {r.parent} over seeds until the step is decided; then harness compare)"
    ctx.echo(fitted(why, indent="  "))


def run_once(ctx: Context, planned: Planned, options: RunOptions, *, force: bool = False) -> Outcome:
    """Train `planned` unless an identical FINISHED run exists; resume a backed-up one. The
    first look for a finished run reads the store without MLflow (an instant answer); the
    second, under the lock, sees a run another process finished meanwhile."""
    r = planned.resolved
    identity = {
        Tag.SPEC_FINGERPRINT: r.fingerprint(),
        Tag.DATASET_FINGERPRINT: planned.data.fingerprint,
    }
    if not force:
        experiment_id = ctx.reader.experiment_id(planned.experiment)
        done = experiment_id and _finished(ctx.reader, experiment_id, identity, options.variant)
        if done:
            return _already_done(ctx, planned, done, experiment_id, quiet=options.quiet)
    store = ctx.writable_store
    experiment_id = store.ensure_experiment(planned.experiment)
    lock = paths.run_lock(ctx.root, f"{r.fingerprint()}-{planned.data.fingerprint}")
    waiting = lambda pid: ctx.echo(
        f"{r.name}: process {pid} is training the same spec on the same data; waiting for it"
    )  # noqa: E731
    with exclusive(lock, on_wait=waiting):
        if not force:
            done = _finished(store, experiment_id, identity, options.variant)
            if done is not None:
                return _already_done(ctx, planned, done, experiment_id, quiet=options.quiet)
        resume = None if force else _resumable(ctx, experiment_id, identity, options.variant)
        return tracked_fit(ctx, planned, options, resume_run_id=resume)


def _already_done(ctx: Context, planned: Planned, done, experiment_id: str, *, quiet: bool) -> Outcome:
    fingerprint = planned.resolved.fingerprint()
    other = _record_alias(ctx, done, planned.resolved.name)
    (silent if quiet else ctx.echo)(
        f"{planned.resolved.name}: already done in run {done.info.run_id}"
        + (f" of {other}" if other else "")
        + f" (same spec {fingerprint} and data {planned.data.fingerprint}); --force runs it again"
    )
    return Outcome(done.info.run_id, experiment_id, "FINISHED", skipped=True, metrics=dict(done.data.metrics))


def _record_alias(ctx: Context, done, name: str) -> Optional[str]:
    """A finished run of another entry of the same spec stands for this one too: the entry
    is added to its aliases tag, so compare finds it under this entry's name. Returns the
    other entry's name (None when the run is this entry's own)."""
    owner = done.data.tags.get(Tag.ENTRY, "")
    aliases = [a for a in done.data.tags.get(Tag.ALIASES, "").split(",") if a]
    if owner in ("", name):
        return None
    if name not in aliases:
        ctx.writable_store.log(done.info.run_id, tags={Tag.ALIASES: ",".join([*aliases, name])})
    return owner


def _finished(store: RunStore, experiment_id: str, identity: dict[str, str], variant: Optional[str]):
    """The latest FINISHED plain run or seed child of this spec and data (a trial, or a run
    of another variant, does not count: compare would not find it as this entry's)."""
    runs = store.runs(experiment_id, status="FINISHED", tags=identity, limit=50)
    return next((run for run in runs if _same_cell(run, variant)), None)


def _same_cell(run, variant: Optional[str]) -> bool:
    """Whether `run` trained what a run-ablation (of `variant`, if any) would: a plain run
    or a seed child, of the same variant."""
    tags = run.data.tags
    kinds = ("variant", "seed") if variant else ("run", "seed")
    return tags.get(Tag.KIND) in kinds and tags.get(Tag.VARIANT, "") == (variant or "")


def _resumable(ctx: Context, experiment_id: str, identity: dict[str, str], variant: Optional[str]) -> Optional[str]:
    """The latest FAILED or KILLED run of this spec and data that left a backup, if any."""
    ended = ctx.writable_store.runs(experiment_id, status=("FAILED", "KILLED"), tags=identity, limit=20)
    for run in ended:
        if _same_cell(run, variant) and paths.backup_state(ctx.root, run.info.run_id).is_file():
            return run.info.run_id
    return None


def _run_group(
    ctx: Context,
    registry: Registry,
    planned: Planned,
    seeds: list[int],
    *,
    force: bool,
    variant: Optional[Variant],
    settings: tuple[str, ...],
) -> Outcome:
    """A group run over `seeds`, one child per seed (a seed already finished is reused);
    reused whole where the same group finished before, unless `force`."""
    r, label = planned.resolved, variant.label if variant else None
    per_seed = [plan(registry, r.name, [*r.overrides, f"training.seed={s}"]) for s in seeds]
    store = ctx.writable_store
    experiment_id = store.ensure_experiment(planned.experiment)
    tags = _group_tags(ctx, planned, seeds, label, settings)
    lock = paths.run_lock(ctx.root, f"group-{tags[Tag.SPEC_FINGERPRINT]}-{planned.data.fingerprint}-{label or ''}")
    waiting = lambda pid: ctx.echo(f"{r.name}: process {pid} is running the same seed group; waiting for it")  # noqa: E731
    with exclusive(lock, on_wait=waiting):  # two identical commands make one group, not two
        if not force:
            done = _finished_group(store, experiment_id, tags)
            if done is not None:
                other = _record_alias(ctx, done, r.name)
                where = f"group run {done.info.run_id}" + (f" of {other}" if other else "")
                ctx.echo(f"{r.name}: seeds {seeds} already done in {where}; --force runs them again")
                ctx.echo(f"group run: {run_link(store.uri, experiment_id, done.info.run_id)}")
                metrics = dict(done.data.metrics)
                return Outcome(done.info.run_id, experiment_id, "FINISHED", skipped=True, metrics=metrics)
        for seeded in per_seed:
            seeded.data.check_data()  # before the group run exists
        return _record_group(ctx, planned, per_seed, tags, label=label, settings=settings, force=force)


def _record_group(
    ctx: Context,
    planned: Planned,
    per_seed: list[Planned],
    tags: dict[str, str],
    *,
    label: Optional[str],
    settings: tuple[str, ...],
    force: bool,
) -> Outcome:
    """The group run: its inputs, each seed as a child, the seed statistics and curves."""
    r, store = planned.resolved, ctx.writable_store
    experiment_id = store.ensure_experiment(planned.experiment)
    title = f"{r.name} {label}" if label else r.name
    with store.run(experiment_id, f"{title} x{len(per_seed)} seeds", tags) as group:
        group_id = group.info.run_id
        _log_group_inputs(store, group_id, planned)
        children = _train_seeds(ctx, group_id, per_seed, title=title, label=label, settings=settings, force=force)
        stats = seed_statistics([c.metrics for c in children])
        store.log(group_id, metrics=stats)
        log_group_curves(store, group_id, [c.run_id for c in children], f"{title} on {planned.data.source}")
    summary = format_summary(stats, "best_val_accuracy")
    ctx.echo(fitted(f"{r.name}: best val_accuracy {summary}  (group run {group_id})"))
    ctx.echo(f"group run: {run_link(store.uri, experiment_id, group_id)}")
    return Outcome(group_id, experiment_id, "FINISHED", metrics=stats, children=children)


def _group_tags(
    ctx: Context, planned: Planned, seeds: list[int], label: Optional[str], settings: tuple[str, ...]
) -> dict[str, str]:
    """A group's tags: a run's, less the seed, plus its seeds, its variant, and a fingerprint
    of the spec and the seeds (a group of other seeds is another group)."""
    tags = run_tags(planned, "variant" if label else "group", ctx.root, settings)
    del tags[Tag.SEED]
    tags[Tag.SEEDS] = ",".join(str(s) for s in seeds)
    if label:
        tags[Tag.VARIANT] = label
    tags[Tag.SPEC_FINGERPRINT] = _group_fingerprint(planned.resolved, seeds)
    return tags


def _finished_group(store: RunStore, experiment_id: str, tags: dict[str, str]):
    """The latest FINISHED group of the same spec, seeds, data and kind, or None."""
    identity = {k: tags[k] for k in (Tag.SPEC_FINGERPRINT, Tag.DATASET_FINGERPRINT, Tag.KIND)}
    found = store.runs(experiment_id, status="FINISHED", tags=identity, limit=1)
    return found[0] if found else None


def _log_group_inputs(store: Store, group_id: str, planned: Planned) -> None:
    """The group's params (its spec less the seed) and its data as MLflow inputs."""
    from harness.tracking.run_inputs import log_dataset_inputs

    r = planned.resolved
    store.log(group_id, params={k: v for k, v in r.flat().items() if k != "training.seed"})
    log_dataset_inputs(store.client, group_id, planned.data)


def _train_seeds(
    ctx: Context,
    group_id: str,
    per_seed: list[Planned],
    *,
    title: str,
    label: Optional[str],
    settings: tuple[str, ...],
    force: bool,
) -> list[Outcome]:
    """Each seed as a child of the group (a finished one reused), the members tag kept
    current so an interrupted group still says which runs it holds."""
    store, children = ctx.writable_store, []
    for seeded in per_seed:
        GUARD.check()
        seed = seeded.spec.training.seed
        ctx.echo(f"--- seed {seed}")
        options = RunOptions(
            kind="seed", parent_run_id=group_id, variant=label, run_name=f"{title} seed {seed}", settings=settings
        )
        children.append(run_once(ctx, seeded, options, force=force))
        store.log(group_id, tags={Tag.MEMBERS: ",".join(c.run_id for c in children)})
    return children


def _group_fingerprint(resolved: Resolved, seeds: list[int]) -> str:
    return hashlib.sha256(f"{resolved.fingerprint()}|{sorted(seeds)}".encode()).hexdigest()[:16]
