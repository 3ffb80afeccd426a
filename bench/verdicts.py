"""--seeds auto against a fixed --seeds MAX on the report's history: how many runs each spends
and whether their verdicts agree.

    python bench/verdicts.py [--data /tmp/cifar] [--subset 2000] [--epochs 2] [--max-seeds 6]
                             [--val-fraction F]
                             [--until final] [--project DIR]

First `harness study UNTIL --seeds MAX` trains every step over seeds 0..MAX-1 on a CIFAR-10
folder subset (or reuses the store of --project). Its verdicts are the reference. Then
`--seeds auto` is replayed on those same runs: auto takes seeds in order (0, 1, then 2, ...)
and a run is a function of its spec and seed, so the runs auto would train are these. Each
round judges the whole table exactly as `harness study --seeds auto` does (the same
functions, Holm across the steps) and gives one more seed to every undecided step and its
parent, until none is undecided below the cap. Prints the runs each spent, the ratio, the
verdicts side by side, how many agree, and how many flipped between helped and hurt.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_DATA, data_overrides, machine, scratch_project  # noqa: E402


def train_fixed(args) -> Path:
    """A project whose store holds the study at --seeds MAX (trained here, unless given)."""
    if args.project:
        return Path(args.project)
    project = scratch_project()
    items = data_overrides(args.data, args.subset)
    if args.val_fraction is not None:
        items.append(f"data.val_fraction={args.val_fraction}")
    sets = [part for item in items for part in ("--set", item)]
    command = [sys.executable, "-m", "harness", "study", args.until, "--seeds", str(args.max_seeds)]
    command += ["--epochs", str(args.epochs), *sets]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    (project / "study.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"the fixed study failed ({done.returncode}); log: {project}/study.log")
    print(f"fixed study: {time.perf_counter() - started:.0f} s, project {project}", flush=True)
    return project


def evidence_by_entry(project: Path, args) -> tuple[object, dict]:
    """(the store, each history entry's evidence at MAX seeds), read as compare reads it."""
    from harness.context import Context
    from harness.entries.registry import Registry
    from harness.results.compare import Scope, compare_table

    ctx = Context(project, echo=lambda _: None)
    source = f"folder:{args.data}" if args.data != "digits" else "digits"
    subset = None if args.data == "digits" and args.subset >= 1437 else args.subset  # as data_overrides sets it
    scope = Scope(source, subset, "best_val_accuracy")
    comparison = compare_table(ctx, scope, chain=args.until)
    chain = Registry(project).history(args.until)
    return ctx.strict_reader, {name: comparison.evidence[name] for name in chain}, comparison


def restricted(evidence, seeds: set[int], key: str):
    """The evidence of these seeds only."""
    members = [m for m in evidence.members if m.seed in seeds]
    values = {key: [m.metrics[key] for m in members if key in m.metrics]}
    return replace(evidence, members=members, values=values, run_ids=[m.run_id for m in members])


def judge_table(store, chain: list[str], evidence: dict, seeds: dict[str, set[int]], key: str, rope: float):
    from harness.results.steps import judge

    pairs = [
        (restricted(evidence[c], seeds[c], key), restricted(evidence[p], seeds[p], key))
        for p, c in zip(chain, chain[1:])
    ]
    return judge(store, pairs, key, rope=rope)


def replay_auto(store, chain: list[str], evidence: dict, args, key: str, rope: float):
    """Rounds of `--seeds auto` over the fixed runs: (seeds per entry, final verdicts, rounds)."""
    from harness.results.verdicts import undecided_family
    from harness.runs.adaptive import paired_seed, wants_more

    seeds = {name: {0, 1} for name in chain}
    rounds = 0
    while True:
        rounds += 1
        verdicts = judge_table(store, chain, evidence, seeds, key, rope)
        family = undecided_family(verdicts)
        steps = list(zip(chain, chain[1:], verdicts))
        more = [(p, c) for p, c, v in steps if wants_more(v, len(seeds[c] & seeds[p]), args.max_seeds, family=family)]
        if not more:
            return seeds, verdicts, rounds
        chosen = [(parent, child, paired_seed(seeds[child], seeds[parent])) for parent, child in more]
        for parent, child, extra in chosen:  # chosen first, added after: as the study queues one round
            seeds[child].add(extra)
            seeds[parent].add(extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 image folder, or digits")
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--val-fraction", type=float, help="data.val_fraction (else the spec's 0.1): more images, tighter intervals"
    )
    parser.add_argument("--max-seeds", type=int, default=6)
    parser.add_argument("--until", default="final")
    parser.add_argument("--project", help="reuse the store of a fixed study made before")
    args = parser.parse_args()
    from harness.results.verdicts import ROPE

    key = "best_val_accuracy"
    project = train_fixed(args)
    store, evidence, comparison = evidence_by_entry(project, args)
    chain = list(evidence)
    full = {name: {m.seed for m in evidence[name].members} for name in chain}
    fixed = judge_table(store, chain, evidence, full, key, ROPE)
    seeds, auto, rounds = replay_auto(store, chain, evidence, args, key, ROPE)
    spent_fixed = sum(len(s) for s in full.values())
    spent_auto = sum(len(s) for s in seeds.values())
    print(f"machine: {machine()}")
    print(
        f"data: {args.data} subset {args.subset}, val_fraction {args.val_fraction or 'as the spec'}, "
        f"{args.epochs} epochs; history {chain[0]} .. {args.until} "
        f"({len(chain)} entries, {len(chain) - 1} steps)"
    )
    print(f"{'step':16s} {'fixed (' + str(args.max_seeds) + ' seeds)':38s} {'auto':38s} seeds")
    agree = flips = futile = 0
    for child, a, b in zip(chain[1:], fixed, auto):
        same = a.word.split(" (")[0] == b.word.split(" (")[0]
        agree += same
        flips += {a.word, b.word} == {"helped", "hurt"}
        n = b.change.n if b.change else 0  # seeds paired with its parent
        stopped = b.word.startswith("undecided") and n < args.max_seeds
        futile += stopped
        note = "  stopped: more seeds could not settle it" if stopped else ""
        print(f"{child:16s} {said(a):38s} {said(b):38s} {n}{note}{'' if same else '  <- differs'}")
    print(
        f"runs: fixed {spent_fixed}, auto {spent_auto} (ratio {spent_auto / spent_fixed:.2f}, {rounds} rounds); "
        f"verdicts agreeing {agree}/{len(chain) - 1}; flipped between helped and hurt {flips}; "
        f"stopped undecided below the cap (more seeds could not settle them) {futile}"
    )


def said(verdict) -> str:
    """A verdict in a table cell: its word (shortened) and its change in percentage points."""
    word = verdict.word.replace("cannot act at this budget", "cannot act").split(" (")[0]
    word = "undecided" if word.startswith("undecided") else word
    change = verdict.change
    if change is None:
        return word
    return f"{word} {100 * change.mean:+.1f} [{100 * change.low:+.1f}, {100 * change.high:+.1f}]"


if __name__ == "__main__":
    main()
