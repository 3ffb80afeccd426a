"""Tracking overhead: the same spec on the same data for the same epochs, as a plain Keras
`model.fit` and as `harness run-ablation` (tracking on), alternated, several times each.

    python bench/overhead.py [--entry final] [--subset 5000] [--epochs 3] [--repeats 5]
    python bench/overhead.py --system-metrics   # harness with MLflow's system metrics vs without

The plain side is what a Keras script does: load the arrays (the same loader and cache),
build and compile the model, fit. The harness side is `run_ablation`, everything included:
resolving the entry, the same data load, tracking every epoch to MLflow, a backup per epoch,
evaluating the validation set, two plots, saving the model, writing the artifacts.

Prints the median of each and their ratio, for the fit alone (what tracking adds per epoch)
and end to end, and the ratio within each adjacent pair: this VM's speed drifts by tens of
percent from one minute to the next (it has a fast and a slow state), so the fastest run of
each side, both at full speed, is the least disturbed comparison; the medians are printed too.

With --system-metrics both sides are `run_ablation`: "plain" without and "harness" with
training.system_metrics=true (MLflow's sampler thread), so the ratio is what sampling costs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_DATA, data_label, data_overrides, machine, median, scratch_project  # noqa: E402
from harness.training.quiet import load_keras  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", default="final")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--system-metrics", action="store_true", help="compare harness with and without sampling")
    args = parser.parse_args()
    load_keras()
    from harness.context import Context
    from harness.data import pipeline
    from harness.data import sources as data
    from harness.entries.registry import Registry
    from harness.runs import runner
    from harness.runs.planning import plan
    from harness.training import train

    project = scratch_project()
    overrides = [*data_overrides(args.data, args.subset), f"training.epochs={args.epochs}"]
    planned = plan(Registry(project), args.entry, overrides)
    spec = planned.spec

    def plain() -> tuple[float, float]:
        started = time.perf_counter()
        d = spec.data
        dataset = data.load(d.source, d.val_fraction, d.subset, d.seed)
        model = train.build(spec, dataset)
        t = spec.training
        kind = pipeline.choose(t, dataset.train, dataset.val, dataset.num_classes)
        weights = train.class_weights(spec, dataset.train.y, dataset.class_names)
        train_data, steps = pipeline.training_batches(
            dataset.train, dataset.num_classes, t, kind=kind, class_weights=weights
        )
        val_data = pipeline.evaluation_batches(dataset.val, dataset.num_classes, t.batch_size, kind)
        fit_started = time.perf_counter()
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=t.epochs,
            verbose=0,
            shuffle=False,
            steps_per_epoch=steps,
            class_weight=None if kind == "device" else weights,
            callbacks=train.core_callbacks(spec),
        )
        end = time.perf_counter()
        return end - fit_started, end - started

    def harness(extra: tuple[str, ...] = ()) -> tuple[float, float]:
        started = time.perf_counter()
        outcome = runner.run_ablation(
            Context(project, echo=lambda _: None, verbose=0), args.entry, [*overrides, *extra], force=True
        )
        return outcome.metrics["train_seconds"], time.perf_counter() - started

    if args.system_metrics:
        baseline, measured = harness, lambda: harness(("training.system_metrics=true",))
    else:
        baseline, measured = plain, harness

    results = {"plain": [], "harness": []}
    for repeat in range(args.repeats):
        order = ("plain", "harness") if repeat % 2 == 0 else ("harness", "plain")
        for name in order:
            fit_s, total_s = baseline() if name == "plain" else measured()
            results[name].append((fit_s, total_s))
            print(f"repeat {repeat + 1} {name:8s} fit {fit_s:7.2f} s   total {total_s:7.2f} s", flush=True)
        p, h = results["plain"][-1], results["harness"][-1]
        print(
            f"repeat {repeat + 1} ratios   fit {h[0] / p[0]:.3f}   end to end {h[1] / p[1]:.3f}   "
            f"(harness outside fit {h[1] - h[0]:.2f} s, plain {p[1] - p[0]:.2f} s)",
            flush=True,
        )
    fit = {k: median([v[0] for v in vals]) for k, vals in results.items()}
    total = {k: median([v[1] for v in vals]) for k, vals in results.items()}
    pairs = list(zip(results["plain"], results["harness"]))
    print(f"\nmachine: {machine()}")
    print(
        f"entry {args.entry}, {data_label(args.data, args.subset, planned.data)}, "
        f"{args.epochs} epochs, {args.repeats} repeats each, alternated"
    )
    if args.system_metrics:
        print("sides: 'plain' = harness without system metrics, 'harness' = harness with them")
    print(
        f"fit:        plain {fit['plain']:.2f} s  harness {fit['harness']:.2f} s  "
        f"ratio of medians {fit['harness'] / fit['plain']:.3f}"
        f"  median paired ratio {median([h[0] / p[0] for p, h in pairs]):.3f}"
    )
    print(
        f"end to end: plain {total['plain']:.2f} s  harness {total['harness']:.2f} s  "
        f"ratio of medians {total['harness'] / total['plain']:.3f}"
        f"  median paired ratio {median([h[1] / p[1] for p, h in pairs]):.3f}"
    )
    best = {k: (min(v[0] for v in vals), min(v[1] for v in vals)) for k, vals in results.items()}
    print(
        f"fastest of each (the VM at full speed): fit ratio {best['harness'][0] / best['plain'][0]:.3f}  "
        f"end to end ratio {best['harness'][1] / best['plain'][1]:.3f}"
    )


if __name__ == "__main__":
    main()
