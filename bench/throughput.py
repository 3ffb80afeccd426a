"""Training throughput of an entry: NumPy-array fit against the harness's tf.data pipeline
(cache, shuffle, batch, prefetch), each with and without XLA, in float32;
then mixed_bfloat16, and the harness's defaults (every auto resolved for this machine).

    python bench/throughput.py [--entry final] [--subset 5000] [--epochs 4]

Images per second come from the fastest epoch after the first (compilation excluded): this
VM has slow spells (the same epoch takes 25 s or 40 s), and the fastest epoch is the one
they did not touch. All epoch times are printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_DATA, data_label, data_overrides, machine, scratch_project  # noqa: E402
from harness.training.quiet import load_keras  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", default="final")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    load_keras()
    from harness.entries.registry import Registry
    from harness.runs.planning import plan
    from harness.training import train

    project = scratch_project()
    base = [*data_overrides(args.data, args.subset), f"training.epochs={args.epochs}", "training.early_stopping=null"]
    f32 = "training.precision=float32"
    configs = [
        ("numpy", ["training.pipeline=numpy", "training.jit_compile=false", f32]),
        ("tf.data", ["training.pipeline=tf_data", "training.jit_compile=false", f32]),
        ("numpy + XLA", ["training.pipeline=numpy", "training.jit_compile=true", f32]),
        ("tf.data + XLA", ["training.pipeline=tf_data", "training.jit_compile=true", f32]),
        ("tf.data bfloat16", ["training.pipeline=tf_data", "training.precision=mixed_bfloat16"]),
        ("harness default", []),
    ]
    rates = {}
    for label, extra in configs:
        planned = plan(Registry(project), args.entry, [*base, *extra])
        model = train.build(planned.spec, planned.data)
        result = train.fit(planned.spec, planned.data, model, verbose=0)
        steady = result.epoch_seconds[1:] or result.epoch_seconds
        rates[label] = len(planned.data.train) / min(steady)  # the fastest epoch: this VM has slow spells
        if not extra:
            default = (planned.spec.training.pipeline, train.resolved_settings(planned.spec, planned.data))
        print(
            f"{label:18s} {rates[label]:8.0f} images/s  "
            f"(epochs {', '.join(f'{s:.1f}' for s in result.epoch_seconds)} s)",
            flush=True,
        )
        del model
    pipeline, settings = default
    print(f"\nmachine: {machine()}")
    print(
        f"harness default here: pipeline {pipeline}, precision {settings['precision']}, "
        f"jit_compile {settings['jit_compile']}"
    )
    print(
        f"entry {args.entry}, {data_label(args.data, args.subset, planned.data)}, {args.epochs} epochs, "
        "fastest epoch after the first"
    )
    for label, rate in rates.items():
        print(f"{label:18s} {rate:8.0f} images/s   x{rate / rates['numpy']:.2f} vs numpy")


if __name__ == "__main__":
    main()
