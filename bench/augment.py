"""The entry's augmentation (translate 0.05, horizontal flip) as the harness builds it
(harness/training/augment.py, keras.ops only) against Keras's RandomTranslation and
RandomFlip, and as a share of a training step of the report's final model. One process,
Keras on JAX (the backend of the GPU machines), on random 32x32x3 images:

    KERAS_BACKEND=jax python bench/augment.py [--repeats 30] [--quick]

(1) the augmentation alone on 512 images, each implementation compiled with jax.jit on the
same offsets (drawn outside), and eager (one op at a time, as the issue first timed it);
(2) training steps of `final` (batch 128, 512 images = 4 steps) with the harness's
augmentation, with Keras's layers, and without any, in alternation. Figures are medians over
the repeats; the first call of each (compilation) is left out. The last line:
`augmentation: X ms per 512 images, Y% of a training step, Z x faster than keras.layers`,
where Y is X over the median time of 512 images' training steps with the augmentation on,
and Z is Keras's compiled time over ours. --quick: a dry run with few repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("KERAS_BACKEND", "jax")

from bench.common import machine  # noqa: E402

IMAGES, SIDE, BATCH = 512, 32, 128  # the report's CIFAR-10 images and its batch size
FACTOR = 0.05  # the report's translate


def timed(function, repeats: int) -> float:
    """Median seconds of `function()` over `repeats` calls after a first (compiling) one."""
    function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def augmentation_alone(repeats: int) -> dict[str, float]:
    """Seconds per 512 images: ours and Keras's, compiled and eager, on the same offsets."""
    import jax
    import keras
    import numpy as np

    from harness.training.augment import flip, translate

    rng = np.random.default_rng(0)
    images = jax.numpy.asarray(rng.random((IMAGES, SIDE, SIDE, 3), dtype=np.float32))
    dy, dx = (jax.numpy.asarray(rng.uniform(-FACTOR, FACTOR, IMAGES) * SIDE, dtype="float32") for _ in range(2))
    flips = jax.numpy.asarray(rng.random(IMAGES) < 0.5)
    keras_translate = keras.layers.RandomTranslation(FACTOR, FACTOR)
    keras_flip = keras.layers.RandomFlip("horizontal")
    translations = jax.numpy.stack([dx, dy], axis=1)

    def ours(x, dy, dx, flips):
        return flip(translate(x, dy, dx, FACTOR), flips, "horizontal")

    def theirs(x, translations, flips):
        moved = keras_translate.transform_images(x, {"translations": translations, "input_shape": x.shape})
        return keras_flip.transform_images(moved, {"flips": flips.reshape(-1, 1, 1, 1), "input_shape": x.shape})

    ours_jit, theirs_jit = jax.jit(ours), jax.jit(theirs)
    block = lambda value: jax.block_until_ready(value)  # noqa: E731 - JAX dispatches asynchronously
    return {
        "ours_jit": timed(lambda: block(ours_jit(images, dy, dx, flips)), repeats),
        "keras_jit": timed(lambda: block(theirs_jit(images, translations, flips)), repeats),
        "ours_eager": timed(lambda: block(ours(images, dy, dx, flips)), max(3, repeats // 5)),
        "keras_eager": timed(lambda: block(theirs(images, translations, flips)), max(3, repeats // 5)),
    }


def training_steps(repeats: int) -> dict[str, float]:
    """Seconds of the training steps over 512 images of `final` with each augmentation."""
    import keras
    import numpy as np

    from harness.entries.registry import Registry
    from harness.training.model import build_model

    spec = Registry(Path(__file__).resolve().parents[1]).resolve("final", ["training.precision=float32"]).spec
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (IMAGES, SIDE, SIDE, 3), dtype=np.uint8)
    y = keras.utils.to_categorical(rng.integers(0, 10, IMAGES), 10)
    models = {}
    for label, augment in (("ours", spec.model.augment), ("none", None)):
        model_spec = spec.model.model_copy(update={"bn_momentum": 0.99, "augment": augment})
        models[label] = build_model(model_spec, (SIDE, SIDE, 3), 10, input_dtype="uint8")
    plain = build_model(spec.model.model_copy(update={"bn_momentum": 0.99, "augment": None}), (SIDE, SIDE, 3), 10)
    inputs = keras.Input((SIDE, SIDE, 3), dtype="uint8")
    scaled = keras.layers.Rescaling(1 / 255)(inputs)
    moved = keras.layers.RandomFlip("horizontal")(keras.layers.RandomTranslation(FACTOR, FACTOR)(scaled))
    models["keras"] = keras.Model(inputs, plain(moved))
    for model in models.values():
        model.compile(optimizer="adam", loss=keras.losses.CategoricalFocalCrossentropy())

    def steps(model):
        def run():
            for start in range(0, IMAGES, BATCH):
                model.train_on_batch(x[start : start + BATCH], y[start : start + BATCH])

        return run

    runs = {label: steps(model) for label, model in models.items()}
    for run in runs.values():
        run()  # compile each before any is timed
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):  # alternated, so a slow spell of the VM touches all alike
        for label, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[label].append(time.perf_counter() - started)
    return {label: statistics.median(values) for label, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls of each (medians)")
    parser.add_argument("--quick", action="store_true", help="a dry run: 3 repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit(f"bench/augment.py measures Keras on JAX; KERAS_BACKEND is {keras.backend.backend()}")
    print(machine(), flush=True)
    print(f"{IMAGES} random {SIDE}x{SIDE}x3 images, translate {FACTOR}, horizontal flip; medians of {repeats}")
    alone = augmentation_alone(repeats)
    ms = {key: value * 1000 for key, value in alone.items()}
    print(f"augmentation alone, jit:   harness {ms['ours_jit']:.2f} ms, keras.layers {ms['keras_jit']:.2f} ms")
    print(f"augmentation alone, eager: harness {ms['ours_eager']:.2f} ms, keras.layers {ms['keras_eager']:.2f} ms")
    step = {key: value * 1000 for key, value in training_steps(repeats).items()}
    print(
        f"training steps of final over {IMAGES} images (batch {BATCH}): with the harness's augmentation "
        f"{step['ours']:.0f} ms, with keras.layers {step['keras']:.0f} ms, without {step['none']:.0f} ms "
        f"(harness {100 * (step['ours'] / step['none'] - 1):+.1f}%, keras.layers "
        f"{100 * (step['keras'] / step['none'] - 1):+.1f}%)"
    )
    share = 100 * ms["ours_jit"] / step["ours"]
    faster = ms["keras_jit"] / ms["ours_jit"]
    print(
        f"augmentation: {ms['ours_jit']:.1f} ms per {IMAGES} images, {share:.2f}% of a training step, "
        f"{faster:.0f} x faster than keras.layers"
    )


if __name__ == "__main__":
    main()
