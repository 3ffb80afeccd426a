"""`--seeds auto`: seeds spent where the answer is unclear. A step starts with two seeds (it
and what it is compared with, paired); while its verdict is `undecided` one more seed is
added to both, until it is decided (helped, hurt, no practical difference), cannot act at
this budget, or has the most seeds allowed (--max-seeds, default 6). A fixed --seeds spends
as much on a step whose effect is obvious after two seeds as on one that needs six."""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Optional

from harness.context import Context
from harness.errors import HarnessError
from harness.results.compare import metric_key
from harness.results.evidence import RunIndex
from harness.results.steps import judge
from harness.results.verdicts import MIN_SEEDS, ROPE, Verdict

AUTO = "auto"
DEFAULT_MAX_SEEDS = 6  # past six seeds an undecided step is as good as decided: no practical difference is likely
MAX_SEEDS_CAP = 1000  # as --seeds


@dataclass(frozen=True)
class SeedChoice:
    """What --seeds asked for: a fixed list, or `auto` up to `auto_max` seeds a step."""

    seeds: Optional[list[int]] = None
    auto_max: Optional[int] = None

    @property
    def auto(self) -> bool:
        return self.auto_max is not None

    @property
    def first(self) -> Optional[list[int]]:
        """The seeds to start with: the list, or the two `auto` starts from."""
        return list(range(MIN_SEEDS)) if self.auto else self.seeds


def seed_choice(text: Optional[str], max_seeds: Optional[int] = None) -> SeedChoice:
    """--seeds (a count, a list, or auto) and --max-seeds (auto only) as a SeedChoice."""
    from harness.runs.runner import parse_seeds

    if text is not None and text.strip().lower() == AUTO:
        limit = DEFAULT_MAX_SEEDS if max_seeds is None else max_seeds
        if not MIN_SEEDS <= limit <= MAX_SEEDS_CAP:
            raise HarnessError(f"--max-seeds {limit}: use {MIN_SEEDS} to {MAX_SEEDS_CAP}")
        return SeedChoice(auto_max=limit)
    if max_seeds is not None:
        raise HarnessError("--max-seeds goes with --seeds auto")
    return SeedChoice(seeds=parse_seeds(text))


def next_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds with one more: the smallest one not yet used."""
    extra = next(s for s in range(len(seeds) + 1) if s not in seeds)
    return [*seeds, extra]


def paired_seed(mine: Set[int], theirs: Set[int]) -> int:
    """The seed that adds one pair to a step, given the seeds its two sides have run (the
    step, and its parent or target): the smallest one side has and the other lacks, so one
    new run makes the pair (in a history an entry is also the parent of the next step, whose
    seeds it may hold already), else the smallest neither has (two new runs)."""
    one_sided = mine ^ theirs
    if one_sided:
        return min(one_sided)
    both = mine | theirs
    return next(s for s in range(len(both) + 1) if s not in both)


def wants_more(verdict: Verdict, n: int, auto_max: int, *, rope: float = ROPE, family: int = 1) -> bool:
    """Whether a step's verdict asks for one more seed: still undecided, below the cap, and
    not past what seeds can settle (results.verdicts.Verdict.settleable; `family`: the
    table's steps still sharing Holm's level, results.verdicts.undecided_family)."""
    return (
        verdict.word.startswith("undecided") and n < auto_max and verdict.settleable(auto_max, rope=rope, family=family)
    )


def why_stopped(verdict: Verdict, n: int, auto_max: int, *, rope: float = ROPE, family: int = 1) -> str:
    """Why an undecided step gets no more seeds, in a clause ("" when it is not undecided);
    `rope` and `family` as wants_more was given them."""
    if not verdict.word.startswith("undecided"):
        return ""
    if n >= auto_max or (verdict.change is not None and verdict.change.n >= auto_max):
        return f"still undecided at --max-seeds {auto_max}"
    change = verdict.change
    if change is None or change.seed_sd is None:
        return f"still undecided with {change.n if change else 0} paired seeds"
    chance = verdict.decision_chance(auto_max, rope=rope, family=family) or 0.0
    return (
        f"more seeds cannot settle it: a change of {100 * change.mean:+.1f} pp (seeds' sd "
        f"{100 * change.seed_sd:.1f} pp; the validation images alone +/-{100 * change.image_floor:.1f} pp) "
        f"has a {_percent(chance)} chance of a decision at {auto_max} seeds "
        "(a larger data.val_fraction narrows the images' part)"
    )


def _percent(chance: float) -> str:
    """A chance as a whole percentage; under 1% but not nothing reads <1%, not 0%."""
    if 0 < chance < 0.01:
        return "<1%"
    return f"{100 * chance:.0f}%"


def run_adaptive(
    ctx: Context, name: str, overrides: Sequence[str], *, auto_max: int, force: bool = False, rope: float = ROPE
):
    """run-ablation NAME --seeds auto: NAME and its parent over two seeds, then one more seed
    to both while NAME's verdict against its parent is undecided, up to auto_max. Returns
    NAME's last outcome."""
    from harness.entries.registry import Registry
    from harness.runs.planning import plan
    from harness.runs.runner import run_ablation

    planned = plan(Registry(ctx.root), name, list(overrides))  # NAME's own mistakes before its parent trains
    parent = planned.resolved.parent
    if parent is None:
        ctx.echo(f"{name} has no parent to be compared with: --seeds auto runs {MIN_SEEDS} seeds")
        return run_ablation(ctx, name, overrides, seeds=list(range(MIN_SEEDS)), force=force)
    seeds = list(range(MIN_SEEDS))
    key = metric_key("best_val_accuracy")
    while True:
        theirs = run_ablation(ctx, parent, overrides, seeds=seeds, force=force)
        mine = run_ablation(ctx, name, overrides, seeds=seeds, force=force)
        force = False  # forced once: the added seeds are new anyway
        store = ctx.writable_store
        index = RunIndex(store, mine.experiment_id)
        pair = (index.evidence(store.get_run(mine.run_id), name), index.evidence(store.get_run(theirs.run_id), parent))
        (verdict,) = judge(store, [pair], key, rope=rope)
        ctx.echo(f"{name} against {parent} after {len(seeds)} seeds: {verdict.word}{_change(verdict)}")
        if not wants_more(verdict, len(seeds), auto_max, rope=rope):
            if verdict.word.startswith("undecided"):
                ctx.echo(f"{name}: {why_stopped(verdict, len(seeds), auto_max, rope=rope)}")
            return mine
        seeds = next_seeds(seeds)
        ctx.echo(f"--- one more seed for {name} and {parent}: {seeds[-1]}")


def _change(verdict: Verdict) -> str:
    c = verdict.change
    return "" if c is None else f", change {c.mean:+.4f} [{c.low:+.4f}, {c.high:+.4f}]"
