"""Does pruning pay? The same 20-trial study with and without Optuna's median pruner, on a
CIFAR-10 subset small enough to finish in minutes; prints epochs spent and best value.

    python bench/pruning.py [--entry dropout] [--subset 2000] [--epochs 8] [--trials 20]
    python bench/pruning.py --data digits --trials 12      # the same on scikit-learn's digits
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_DATA, data_overrides, machine, scratch_project  # noqa: E402
from harness.training.quiet import load_keras  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", default="dropout")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    load_keras()
    import optuna

    from harness.context import Context
    from harness.tuning import tune

    overrides = [*data_overrides(args.data, args.subset), f"training.epochs={args.epochs}"]
    rows = []
    for pruner in ("none", "median"):
        project = scratch_project()  # separate stores: the same study twice, from scratch
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        started = time.perf_counter()
        ctx = Context(project, echo=lambda _: None, verbose=0)
        outcome = tune.tune(ctx, args.entry, tune.TuneSettings(args.trials, pruner=pruner), overrides)
        seconds = time.perf_counter() - started
        rows.append((pruner, outcome, seconds))
        print(
            f"pruner {pruner:6s}: {outcome.trials} trials ({outcome.pruned} pruned), {outcome.epochs_spent} epochs, "
            f"best val_accuracy {outcome.best_value:.4f}, {seconds:.0f} s",
            flush=True,
        )
    print(f"\nmachine: {machine()}")
    data = "digits" if args.data == "digits" else f"CIFAR-10 folder subset {args.subset}"
    print(f"entry {args.entry}, {data}, up to {args.epochs} epochs a trial, {args.trials} trials, TPE sampler")
    (_, none, t_none), (_, median, t_median) = rows
    print(
        f"median pruning: {median.epochs_spent}/{none.epochs_spent} epochs "
        f"({median.epochs_spent / none.epochs_spent:.2f}x), "
        f"{t_median:.0f}/{t_none:.0f} s, best {median.best_value:.4f} vs {none.best_value:.4f}"
    )


if __name__ == "__main__":
    main()
