"""The report's history on one dataset, with seeds: run every step, print the comparison
table (Markdown) and select, test and register the final model.

    python bench/history.py [--dataset digits] [--seeds 2] [--epochs 5] [--until final]

Runs already finished with the same spec and data are reused, so it can be re-run cheaply.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, machine  # noqa: E402
from harness.quiet import load_keras  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--until", default="final")
    parser.add_argument("--root", default=str(REPO), help="project folder whose mlruns/ to use")
    args = parser.parse_args()
    load_keras()
    from harness import runner
    from harness.compare import Scope, compare_table, render
    from harness.context import Context
    from harness.entries import Registry
    from harness.selection import select

    root = Path(args.root)
    overrides = [f"data.source={args.dataset}", f"training.epochs={args.epochs}"]
    chain = Registry(root).history(args.until)
    for name in chain:
        outcome = runner.run_ablation(
            Context(root, echo=lambda _: None, verbose=0), name, overrides, seeds=list(range(args.seeds))
        )
        mean = outcome.metrics.get("best_val_accuracy_mean", float("nan"))
        print(f"{name:15s} best_val_accuracy {mean:.4f} (group run {outcome.run_id})", flush=True)
    table, _ = compare_table(Context(root), Scope(args.dataset), chain=args.until)
    print(f"\nmachine: {machine()}; {args.dataset}, {args.epochs} epochs, {args.seeds} seeds\n")
    print(render(table, "best_val_accuracy", "markdown"))
    print()
    select(Context(root), Scope(args.dataset), chain)


if __name__ == "__main__":
    main()
