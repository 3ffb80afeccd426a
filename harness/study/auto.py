"""`harness study --seeds auto`: once every cell has ended, each step (and, with
--leave-one-out, each variant) is judged; a step still `undecided` below --max-seeds gets
one more seed, for it and for what it is compared with (its parent; the target, for a
variant), as new cells in the same Optuna storage, so every worker takes them and a rerun
continues. When no step wants more, the final steps are queued as usual."""

from __future__ import annotations

from harness.context import Context
from harness.entries.registry import Registry
from harness.results.compare import compare_table
from harness.results.evidence import RunIndex
from harness.results.steps import judge
from harness.results.verdicts import Verdict, undecided_family
from harness.runs.adaptive import paired_seed, wants_more, why_stopped
from harness.study.cells import Cell, StudyPlan
from harness.study.queue import (
    CELLS,
    GROUPS,
    cells_ended,
    finish_groups,
    finished_groups,
    group_trials,
    own_runs_scope,
)
from harness.tracking.names import Tag
from harness.tuning.storage import study_lock

METRIC = "best_val_accuracy"
JUDGED = "auto_judged_at_cells"  # study user attribute: how many cells there were when none wanted more
TOLD = "auto_told_stopped"  # study user attribute: the steps already said to get no more seeds, said once


def add_seeds(ctx: Context, study, storage, plan_: StudyPlan, first) -> int:
    """Queue one more seed for every undecided step below the cap; returns how many cells
    were added (0: every step is decided, cannot act, or has its seeds)."""
    if not cells_ended(study):
        return 0
    with study_lock(ctx.root, storage, study.study_name):
        recorded = study.user_attrs[CELLS]
        if study.user_attrs.get(JUDGED) == len(recorded) or not cells_ended(study):
            return 0
        finish_groups(ctx, study)
        seeds = _seeds_by_group(study)
        told = set(study.user_attrs.get(TOLD, []))
        wanted = _undecided(ctx, study, plan_, first, seeds, told)
        study.set_user_attr(TOLD, sorted(told))
        new = []
        for group, compared_with in wanted:
            seed = paired_seed(seeds[group], seeds[compared_with])
            for target_group in (group, compared_with):
                if seed not in seeds[target_group] and (target_group, seed) not in {(c.group, c.seed) for c in new}:
                    new.append(_cell(Registry(ctx.root), plan_, recorded, target_group, seed))
        if not new:
            study.set_user_attr(JUDGED, len(recorded))
            return 0
        cells = [*recorded]
        for cell in new:
            attrs = cell.to_attrs(len(cells))
            cells.append(attrs)
            study.enqueue_trial({}, user_attrs=attrs)
        study.set_user_attr(CELLS, cells)
        _reopen_groups(ctx, study, {c.group for c in new})
    names = ", ".join(sorted({c.label for c in new}))
    ctx.echo(f"--seeds auto: {len(wanted)} undecided, {len(new)} more cells: {names}")
    return len(new)


def _seeds_by_group(study) -> dict[str, set[int]]:
    seeds: dict[str, set[int]] = {}
    for cell in study.user_attrs[CELLS]:
        group = f"{cell['entry']} {cell['variant']}" if cell.get("variant") else cell["entry"]
        seeds.setdefault(group, set()).add(int(cell["seed"]))
    return seeds


def _undecided(
    ctx: Context, study, plan_: StudyPlan, first, seeds: dict[str, set[int]], told: set[str]
) -> list[tuple[str, str]]:
    """(group, the group it is compared with) of every step and variant that wants a seed;
    an undecided one that does not is told why, once (`told` grows)."""
    store = ctx.writable_store
    finished = finished_groups(ctx, study)
    scope = own_runs_scope(plan_, first, finished, Registry(ctx.root).history(plan_.target), METRIC)
    judged = compare_table(ctx, scope, chain=plan_.target).verdicts
    family = undecided_family(list(judged.values()))
    wanted = []
    for entry, verdict in judged.items():
        parent = Registry(ctx.root).entry(entry).parent
        if (
            parent in seeds
            and entry in seeds
            and _wants(ctx, (entry, verdict), len(seeds[entry] & seeds[parent]), plan_.auto_max, family, told)
        ):
            wanted.append((entry, parent))
    variants = sorted(g for g in finished if g.startswith(f"{plan_.target} without "))
    if variants and plan_.target in finished:
        index = RunIndex(store, store.ensure_experiment(first.experiment))
        full = index.evidence(store.get_run(finished[plan_.target]), plan_.target)
        pairs = [(full, index.evidence(store.get_run(finished[v]), v)) for v in variants]
        judged_variants = judge(store, pairs, METRIC)
        family = undecided_family(judged_variants)
        for variant, verdict in zip(variants, judged_variants):
            paired = len(seeds[variant] & seeds[plan_.target])
            if _wants(ctx, (variant, verdict), paired, plan_.auto_max, family, told):
                wanted.append((variant, plan_.target))
    return wanted


def _wants(ctx: Context, judged: tuple[str, Verdict], n: int, auto_max: int, family: int, told: set[str]) -> bool:
    """Whether a group wants one more seed; an undecided one that does not is told why once."""
    group, verdict = judged
    if wants_more(verdict, n, auto_max, family=family):
        told.discard(group)  # Holm's level loosened as others were decided: it may be told again
        return True
    reason = why_stopped(verdict, n, auto_max, family=family)
    if reason and group not in told:
        told.add(group)
        ctx.echo(f"--seeds auto: {group}: {reason}")
    return False


def _cell(registry: Registry, plan_: StudyPlan, recorded: list[dict], group: str, seed: int) -> Cell:
    """A new cell of `group` (an entry, or the target without a step) for `seed`."""
    like = Cell.from_attrs(next(c for c in recorded if _group_of(c) == group))
    resolved = registry.resolve(like.entry, [*plan_.overrides, *like.variant_overrides, f"training.seed={seed}"])
    return Cell(like.entry, seed, like.variant, like.variant_overrides, resolved.fingerprint(), like.cost)


def _group_of(attrs: dict) -> str:
    return f"{attrs['entry']} {attrs['variant']}" if attrs.get("variant") else attrs["entry"]


def _reopen_groups(ctx: Context, study, names: set[str]) -> None:
    """A group that gets a seed waits again (SCHEDULED) under its new name and seeds, and
    is finished again, its statistics over every seed, once its new cells end."""
    store = ctx.writable_store
    groups = study.user_attrs[GROUPS]
    for name in names:
        run_id = groups.get(name)
        if run_id is None:  # no cell of it has started yet: group_run makes it, with every seed
            continue
        seeds = sorted({int(t.user_attrs["seed"]) for t in group_trials(study, name)})
        store.log(run_id, tags={Tag.SEEDS: ",".join(map(str, seeds))})
        store.client.update_run(run_id, status="SCHEDULED", name=f"{name} x{len(seeds)} seeds")
