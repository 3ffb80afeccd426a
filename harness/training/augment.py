"""The entry's augmentation (`model.augment`) as layers built from keras.ops alone, so they
run on the device on every backend, inside the compiled training step.

Keras's RandomTranslation resamples every pixel through an affine transform (on JAX,
`map_coordinates`, which XLA runs at CPU speed on a GPU: 135x the cost of the model on the
H200, docs/performance.md). A pure translation needs much less: the whole part of each
image's shift is a reflect pad and a per-image crop, the fractional part a linear
interpolation of the two neighbours the crop holds, which is exactly what bilinear
resampling computes for a translation. The flip is a select. Same offsets in, same pixels
out as `keras.layers.RandomTranslation(fill_mode="reflect", interpolation="bilinear")`
(tests/training/test_augment.py).

Training core: imports neither mlflow nor optuna.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
from keras import ops

from harness.entries.spec import FLIP_MODES, TRANSLATE_MAX


def translate(images, dy, dx, factor: float = TRANSLATE_MAX):
    """Each image moved `dy` pixels down and `dx` right (both (batch,), at most `factor` x
    the height and width either way): output[y, x] = input[y - dy, x - dx], the edges
    reflected, a fractional shift interpolated linearly between the two neighbours."""
    height, width, channels = images.shape[1:]
    # Output row i reads source row i - whole (weight 1 - fraction) and the row before it
    # (weight fraction): one crop of height + 1 rows of the padded image, one row early.
    # A shift of at most r pixels has a whole part from -ceil(r) to floor(r), so a pad of
    # floor(r) + 1 holds every crop (and never exceeds the side, which reflection needs).
    pad_y, pad_x = math.floor(factor * height) + 1, math.floor(factor * width) + 1
    padded = ops.pad(images, [(0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)], mode="symmetric")
    whole_y, whole_x = ops.floor(dy), ops.floor(dx)
    top = ops.clip(pad_y - 1 - ops.cast(whole_y, "int32"), 0, 2 * pad_y - 1)
    left = ops.clip(pad_x - 1 - ops.cast(whole_x, "int32"), 0, 2 * pad_x - 1)

    def crop(args):
        image, row, column = args
        return ops.slice(image, ops.stack([row, column, 0]), (height + 1, width + 1, channels))

    window = ops.vectorized_map(crop, (padded, top, left))
    fraction_y = ops.reshape(ops.cast(dy - whole_y, images.dtype), (-1, 1, 1, 1))
    fraction_x = ops.reshape(ops.cast(dx - whole_x, images.dtype), (-1, 1, 1, 1))
    rows = window[:, 1:] * (1 - fraction_y) + window[:, :-1] * fraction_y
    return rows[:, :, 1:] * (1 - fraction_x) + rows[:, :, :-1] * fraction_x


def flip(images, flips, mode: str):
    """The images where `flips` (batch,) is true mirrored as `mode` says; the others as they are."""
    chosen = ops.reshape(flips, (-1, 1, 1, 1))
    if mode in ("horizontal", "horizontal_and_vertical"):
        images = ops.where(chosen, ops.flip(images, axis=2), images)
    if mode in ("vertical", "horizontal_and_vertical"):
        images = ops.where(chosen, ops.flip(images, axis=1), images)
    return images


@keras.saving.register_keras_serializable(package="harness")
class Translate(keras.layers.Layer):
    """Random translation during training, as keras.layers.RandomTranslation(factor, factor,
    fill_mode="reflect", interpolation="bilinear"): each image's offsets are uniform in
    +/-factor x its height and width, drawn independently per image from a seeded
    generator. At inference the images pass unchanged."""

    def __init__(self, factor: float, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= factor < TRANSLATE_MAX:
            raise ValueError(f"translate factor {factor} outside [0, {TRANSLATE_MAX})")
        self.factor, self.seed = float(factor), seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or self.factor == 0.0:
            return images
        height, width = images.shape[1], images.shape[2]
        dy, dx = self.offsets(ops.shape(images)[0], height, width)
        return translate(images, dy, dx, self.factor)

    def offsets(self, batch, height: int, width: int):
        """(dy, dx), each (batch,): pixels down and right, uniform in +/-factor x the side."""
        dy = keras.random.uniform((batch,), -self.factor, self.factor, seed=self.generator) * height
        dx = keras.random.uniform((batch,), -self.factor, self.factor, seed=self.generator) * width
        return dy, dx

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}


@keras.saving.register_keras_serializable(package="harness")
class Flip(keras.layers.Layer):
    """Random flips during training, as keras.layers.RandomFlip(mode): each image mirrored
    with probability 1/2, independently, from a seeded generator. At inference, unchanged."""

    def __init__(self, mode: str = "horizontal", seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if mode not in FLIP_MODES:
            raise ValueError(f"flip mode {mode!r}: expected one of {', '.join(FLIP_MODES)}")
        self.mode, self.seed = mode, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        flips = keras.random.uniform((ops.shape(images)[0],), seed=self.generator) <= 0.5
        return flip(images, flips, self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "seed": self.seed}
