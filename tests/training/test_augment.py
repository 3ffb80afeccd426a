"""The on-device augmentation (harness/training/augment.py) against Keras's own layers: the
same offsets give the same pixels, on TensorFlow and on JAX; the offsets are drawn as
Keras draws them; nothing changes at inference; a saved model loads in safe mode."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO, needs_jax

COMPARE = """
import numpy as np, keras
from harness.training.augment import flip, translate

rng = np.random.default_rng(0)
images = rng.random((48, 32, 24, 3)).astype("float32")  # not square: height and width apart
dx = rng.uniform(-0.49, 0.49, 48) * 24
dy = rng.uniform(-0.49, 0.49, 48) * 32
dx[:6] = [3.0, 0.0, -11.75, 0.5, -0.5, 11.99]  # whole shifts, none, the largest, halves
dy[:6] = [0.0, -2.5, 15.6, 15.99, -15.99, 0.25]
translations = np.stack([dx, dy], axis=1).astype("float32")
keras_layer = keras.layers.RandomTranslation(0.5, 0.5, fill_mode="reflect", interpolation="bilinear")
expected = keras_layer.transform_images(images, {"translations": translations, "input_shape": images.shape})
ours = translate(images, dy.astype("float32"), dx.astype("float32"))
print("TRANSLATE", float(np.abs(keras.ops.convert_to_numpy(expected) - keras.ops.convert_to_numpy(ours)).max()))
flips = rng.random(48) < 0.5
for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
    layer = keras.layers.RandomFlip(mode)
    expected = layer.transform_images(images, {"flips": flips.reshape(-1, 1, 1, 1), "input_shape": images.shape})
    ours = flip(images, flips, mode)
    gap = np.abs(keras.ops.convert_to_numpy(expected) - keras.ops.convert_to_numpy(ours)).max()
    print("FLIP", mode, float(gap))
"""


@pytest.fixture(autouse=True)
def float32_policy():
    """The layers compare pixels in float32: a run earlier in this process may have left the
    global policy at mixed_bfloat16 (the default where the CPU has AMX-BF16)."""
    import keras

    before = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy(before)


@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=needs_jax)])
def test_same_offsets_give_keras_pixels(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", COMPARE], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    gaps = {" ".join(line.split()[:-1]): float(line.split()[-1]) for line in result.stdout.splitlines()}
    assert set(gaps) == {"TRANSLATE", "FLIP horizontal", "FLIP vertical", "FLIP horizontal_and_vertical"}
    assert gaps["TRANSLATE"] < 1e-5, gaps
    assert max(gaps.values()) < 1e-5, gaps


def test_offsets_are_keras_distribution_per_image_and_seeded():
    from scipy import stats

    from harness.training.augment import Translate

    layer = Translate(0.1, seed=3)
    dy, dx = (np.asarray(a) for a in layer.offsets(4000, 32, 20))
    assert dy.shape == dx.shape == (4000,)
    assert -3.2 <= dy.min() and dy.max() <= 3.2 and -2.0 <= dx.min() and dx.max() <= 2.0
    assert stats.kstest(dy, stats.uniform(-3.2, 6.4).cdf).pvalue > 1e-3
    assert stats.kstest(dx, stats.uniform(-2.0, 4.0).cdf).pvalue > 1e-3
    assert abs(np.corrcoef(dy, dx)[0, 1]) < 0.1  # the two directions drawn apart
    again = Translate(0.1, seed=3).offsets(4000, 32, 20)
    assert np.array_equal(np.asarray(again[0]), dy)  # seeded: the same draws again
    other = Translate(0.1, seed=4).offsets(4000, 32, 20)
    assert not np.array_equal(np.asarray(other[0]), dy)


def test_training_only_and_every_image_its_own():
    from harness.training.augment import Flip, Translate

    images = np.random.default_rng(1).random((16, 12, 12, 1)).astype("float32")
    for layer in (Translate(0.3, seed=0), Flip("horizontal", seed=0)):
        assert np.array_equal(np.asarray(layer(images, training=False)), images)
        assert np.array_equal(np.asarray(layer(images)), images)  # inference by default
        moved = np.asarray(layer(images, training=True))
        changed = [not np.allclose(moved[i], images[i]) for i in range(16)]
        assert 2 <= sum(changed) <= 16, (type(layer).__name__, changed)
    shifted = np.asarray(Translate(0.3, seed=0)(images, training=True))
    # Per-image offsets: no two images moved alike (a shared offset would keep their differences).
    differences = {round(float(np.abs(shifted[i] - images[i]).mean()), 6) for i in range(16)}
    assert len(differences) > 8


def test_bad_factor_or_mode_is_refused():
    from harness.training.augment import Flip, Translate

    for factor in (0.5, -0.01, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Translate(factor)
    with pytest.raises(ValueError, match="flip mode"):
        Flip("diagonal")


@pytest.mark.slow
def test_an_augmented_model_saves_and_loads_in_safe_mode(tmp_path):
    import keras

    from harness.entries.registry import Registry
    from harness.training.model import build_model

    spec = Registry(REPO).resolve("final").spec
    model = build_model(spec.model.model_copy(update={"bn_momentum": 0.99}), (32, 32, 3), 10, input_dtype="uint8")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    names = [type(layer).__name__ for layer in loaded.layers[:5]]
    assert names[2:4] == ["Translate", "Flip"], names
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    assert np.allclose(model.predict(images, verbose=0), loaded.predict(images, verbose=0), atol=1e-6)


@needs_jax
@pytest.mark.slow
def test_the_augmentation_bench_runs_on_jax_and_ends_with_its_figures():
    """bench/augment.py --quick in CI's JAX environment: it runs and its last line has the
    three figures (their values are the bench's to print, not this test's to judge)."""
    import re

    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "augment.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    figures = r"augmentation: [\d.]+ ms per 512 images, [\d.]+% of a training step, [\d.]+ x faster than keras.layers"
    assert re.fullmatch(figures, last), last
