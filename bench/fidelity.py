"""Fidelity: the final entry through the harness and the same model written in plain Keras
(section 1 of the report, layer by layer, below), same data, same epochs, three seeds each.
Both should reach the same validation accuracy within seed noise.

    python bench/fidelity.py [--subset 5000] [--epochs 10] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_DATA, data_overrides, machine, scratch_project  # noqa: E402
from harness.training.quiet import load_keras  # noqa: E402


def plain_keras_final(input_shape, classes, bn_momentum):
    """Section 1 of the report in plain Keras."""
    from keras import Input, Sequential, layers, regularizers

    model = Sequential([Input(input_shape), layers.RandomTranslation(0.05, 0.05), layers.RandomFlip("horizontal")])
    for filters, dropout in ((64, 0.1), (128, 0.2), (256, 0.5)):
        for _ in range(2):
            model.add(layers.Conv2D(filters, (3, 3), padding="same"))
            model.add(layers.BatchNormalization(momentum=bn_momentum))
            model.add(layers.Activation("relu"))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Dropout(dropout))
    model.add(layers.Flatten())
    model.add(layers.Dense(128, kernel_regularizer=regularizers.L2(0.005)))
    model.add(layers.BatchNormalization(momentum=bn_momentum))
    model.add(layers.Activation("relu"))
    model.add(layers.Dropout(0.4))
    model.add(layers.Dense(classes, activation="softmax"))
    return model


def plain_run(dataset, seed, epochs, bn_momentum) -> float:
    import keras
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    keras.mixed_precision.set_global_policy("float32")  # Keras's default; the harness may have set another
    keras.utils.set_random_seed(seed)
    model = plain_keras_final(dataset.input_shape, dataset.num_classes, bn_momentum)
    model.compile(
        optimizer=keras.optimizers.Adam(),
        metrics=["accuracy"],
        loss=keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0),
    )
    y = dataset.train.y
    weights = dict(enumerate(compute_class_weight("balanced", classes=np.unique(y), y=y)))
    weights[3] *= 2
    weights[5] *= 2

    def scaled(x):  # as a script would: photographs to [0, 1]
        return x.astype("float32") / 255.0 if x.dtype == np.uint8 else x

    history = model.fit(
        scaled(dataset.train.x),
        keras.utils.to_categorical(y, dataset.num_classes),
        batch_size=128,
        epochs=epochs,
        verbose=0,
        validation_data=(scaled(dataset.val.x), keras.utils.to_categorical(dataset.val.y, dataset.num_classes)),
        class_weight=weights,
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=5, mode="max", restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-6),
        ],
    )
    return max(history.history["val_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    load_keras()
    from harness.context import Context
    from harness.entries.registry import Registry
    from harness.results.stats import summarize, welch_p
    from harness.runs import runner
    from harness.runs.planning import plan
    from harness.training import train
    from harness.training.device import resolve_precision

    seeds = [int(s) for s in args.seeds.split(",")]
    project = scratch_project()
    overrides = [*data_overrides(args.data, args.subset), f"training.epochs={args.epochs}"]
    planned = plan(Registry(project), "final", overrides)
    momentum = train.resolve_bn_momentum(planned.spec, len(planned.data.train))
    precision = resolve_precision(planned.spec)
    harness_values, plain_values = [], []
    for seed in seeds:
        ctx = Context(project, echo=lambda _: None, verbose=0)
        outcome = runner.run_ablation(ctx, "final", [*overrides, f"training.seed={seed}"], force=True)
        harness_values.append(outcome.metrics["best_val_accuracy"])
        plain_values.append(plain_run(planned.data, seed, args.epochs, momentum))
        print(f"seed {seed}: harness {harness_values[-1]:.4f}   plain Keras {plain_values[-1]:.4f}", flush=True)
    harness_summary, plain_summary = summarize(harness_values), summarize(plain_values)
    (hm, hs), (pm, ps) = (harness_summary.mean, harness_summary.std), (plain_summary.mean, plain_summary.std)
    p = welch_p(harness_values, plain_values)
    p = float("nan") if p is None else p
    print(f"\nmachine: {machine()}")
    print(
        f"final entry, CIFAR-10 folder subset {args.subset} "
        f"({len(planned.data.train)} train / {len(planned.data.val)} val), "
        f"{args.epochs} epochs, seeds {seeds}, batch-norm momentum {momentum} (auto) in both; "
        f"harness precision {precision} (auto), plain Keras float32"
    )
    print(
        f"best val_accuracy: harness {hm:.4f} +/- {hs:.4f}   plain Keras {pm:.4f} +/- {ps:.4f}   "
        f"difference {hm - pm:+.4f}, Welch p {p:.3g}"
    )


if __name__ == "__main__":
    main()
