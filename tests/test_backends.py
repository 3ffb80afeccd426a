"""The fast commands import no TensorFlow; the training core runs on Keras's JAX backend
(with no TensorFlow at all) where JAX is installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

PROBE = """
import os, sys, runpy


def exit_without_finalising(code):  # the CLI ends with os._exit; raise instead, to look around
    raise SystemExit(code)


os._exit = exit_without_finalising
sys.argv = ["harness", *{args!r}]
try:
    runpy.run_module("harness", run_name="__main__")
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("tensorflow", "keras", "mlflow", "optuna", "jax") if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["show", "final"], ["show", "final", "--diff"]])
def test_fast_commands_import_no_tensorflow_and_answer_in_under_a_second(project, args):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY:\n" in result.stderr + "\n", result.stderr
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=project, capture_output=True, text=True)
        timings.append(time.perf_counter() - started)
        assert done.returncode == 0
    assert min(timings) < 1.0, timings


JAX_SCRIPT = """
import sys


class NoTensorFlow:  # a machine with JAX and no TensorFlow
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("TensorFlow is hidden from this test")


sys.meta_path.insert(0, NoTensorFlow())
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from harness import data, train
from harness.entries import Registry
spec = Registry({root!r}).resolve("final", ["data.subset=240", "training.epochs=2"]).spec
dataset = data.load("digits", 0.25, 240, 0)
model = train.build(spec, dataset)
result = train.fit(spec, dataset, model, verbose=0)
assert result.epochs_run == 2 and result.history["loss"][1] == result.history["loss"][1]
assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
print("JAX-OK", model.count_params(), result.history["val_accuracy"])
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (CI need not install it)")
def test_the_final_entry_trains_on_the_jax_backend_without_tensorflow():
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT.format(root=str(REPO))], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "JAX-OK" in result.stdout


def test_auto_precision_follows_the_device():
    from harness.device import auto_precision

    assert auto_precision("gpu", "tensorflow", frozenset()) == "mixed_float16"
    assert auto_precision("gpu", "jax", frozenset({"amx_bf16"})) == "mixed_float16"
    assert auto_precision("cpu", "tensorflow", frozenset({"avx2", "avx512f"})) == "float32"
    assert auto_precision("cpu", "tensorflow", frozenset({"avx512f", "amx_bf16"})) == "mixed_bfloat16"
    assert auto_precision("cpu", "jax", frozenset({"amx_bf16"})) == "float32"  # measured under TensorFlow only


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_the_output_layer_in_float32(precision):
    import keras
    import numpy as np

    from harness import data, train
    from harness.entries import Registry

    spec = Registry(REPO).resolve("final", [f"training.precision={precision}", "data.subset=200"]).spec
    dataset = data.load("digits", 0.25, 200, 0)
    model = train.build(spec, dataset)
    try:
        compute = {layer.dtype_policy.compute_dtype for layer in model.layers if layer.weights}
        assert compute == {precision.removeprefix("mixed_")}
        assert {w.dtype for w in model.weights} == {"float32"}  # variables stay float32
        assert (
            type(model.layers[-1]).__name__ == "Activation" and model.layers[-1].dtype_policy.compute_dtype == "float32"
        )
        assert model.predict(dataset.val.x[:8], verbose=0).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")  # the global policy back for later tests
