"""Steps measured from the runs behind them: a child's evidence against its parent's (or,
in a leave-one-out table, the full entry against the entry without one step), paired by
seed, with each seed's per-image validation results where the runs kept them, and a table of
such steps decided together (results.verdicts, Holm across the table)."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from harness.results.budget import cannot_act
from harness.results.evidence import Evidence, Member
from harness.results.verdicts import ROPE, Change, SeedPrior, Verdict, measure, table_priors, verdicts
from harness.tracking.names import VAL_CORRECT
from harness.tracking.protocol import RunStore

ACCURACY_KEYS = ("best_val_accuracy",)  # what val_correct.npy counts
BOUNDS = {  # a change of a metric in [0, 1] stays in [-1, 1]
    "best_val_accuracy": (-1.0, 1.0),
    "val_macro_f1": (-1.0, 1.0),
}
LOWER_IS_BETTER = ("loss", "gap", "seconds")  # parts of metric names where less is better

Pair = tuple[Optional[Evidence], Optional[Evidence]]  # (the step's runs, what it is measured against)


def higher_is_better(metric: str) -> bool:
    return not any(part in metric for part in LOWER_IS_BETTER)


def judge(store: RunStore, pairs: Sequence[Pair], key: str, *, rope: float = ROPE) -> list[Verdict]:
    """One verdict per pair (a pair missing a side gets an empty `undecided (n=0)`), the
    p-values corrected across all of them."""
    measurable = [
        found is not None and against is not None and key in against.values and key in found.values
        for found, against in pairs
    ]
    reasons = [cannot_act(*pair) if ok else None for pair, ok in zip(pairs, measurable)]
    spreads = [
        paired_changes(*pair, key) if ok and reason is None else np.array([])
        for pair, ok, reason in zip(pairs, measurable, reasons)
    ]
    changes = []
    with tempfile.TemporaryDirectory(prefix="harness-verdicts-") as tmp:
        for (found, against), ok, prior in zip(pairs, measurable, table_priors(spreads)):
            changes.append(measure_step(store, found, against, key, Path(tmp), prior) if ok else None)
    return verdicts(changes, reasons, rope=rope, higher_is_better=higher_is_better(key))


def paired_changes(found: Evidence, against: Evidence, key: str) -> np.ndarray:
    """found minus against on `key` for each seed both have (none where any run of either
    side is not finite: a diverged run is no measurement, as in results.verdicts.measure)."""
    child, parent = found.by_seed(key), against.by_seed(key)
    if not all(math.isfinite(m.metrics[key]) for m in (*child.values(), *parent.values())):
        return np.array([])
    return np.array([child[s].metrics[key] - parent[s].metrics[key] for s in sorted(set(child) & set(parent))])


def measure_step(
    store: RunStore, found: Evidence, against: Evidence, key: str, folder: Path, prior: Optional[SeedPrior] = None
) -> Optional[Change]:
    """found minus against on `key`, paired by seed; for accuracy, with each seed's images;
    the seeds' spread moderated by the `prior` the table's other steps lend it
    (results.verdicts.table_priors)."""
    child, parent = found.by_seed(key), against.by_seed(key)
    bounds = BOUNDS.get(key, (-math.inf, math.inf))
    if not child or not parent:  # runs that never said their seed: compared unpaired
        unpaired = {i: v for i, v in enumerate(found.values[key])}
        return measure(unpaired, {-1 - i: v for i, v in enumerate(against.values[key])}, bounds=bounds)
    correct = None
    if key in ACCURACY_KEYS:
        correct = (_correctness(store, child, folder), _correctness(store, parent, folder))
    values = ({s: m.metrics[key] for s, m in child.items()}, {s: m.metrics[key] for s, m in parent.items()})
    return measure(*values, correct=correct, bounds=bounds, prior=prior)


def _correctness(store: RunStore, members: dict[int, Member], folder: Path) -> dict[int, np.ndarray]:
    """Each seed's per-image correctness (val_correct.npy), where its run kept it."""
    found = {}
    for seed, member in members.items():
        try:
            path = store.download_artifact(member.run_id, VAL_CORRECT, folder / member.run_id)
            found[seed] = np.load(path).astype(bool)
        except (FileNotFoundError, OSError, ValueError):
            continue
    return found
