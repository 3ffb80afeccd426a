"""The fast commands import no TensorFlow; the training core runs on Keras's JAX backend
(with no TensorFlow at all) where JAX is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, needs_jax, run_cli

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
heavy = sorted(m for m in ("tensorflow", "keras", "mlflow", "optuna", "jax", "sklearn") if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["show", "final"], ["show", "final", "--diff"]])
def test_fast_commands_import_nothing_heavy(project, args):
    """How fast they answer is bench/readonly.py's figure; what makes them fast is checked here."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY:\n" in result.stderr + "\n", result.stderr


def _heavy_modules(args, project) -> list[str]:
    probe = PROBE.format(args=args)
    result = subprocess.run([sys.executable, "-c", probe], cwd=project, capture_output=True, text=True)
    line = [text for text in result.stderr.splitlines() if text.startswith("HEAVY:")]
    assert line, result.stderr
    return [m for m in line[-1][len("HEAVY:") :].split(",") if m]


@pytest.mark.slow
def test_commands_that_only_read_the_store_import_nothing_heavy(project):
    """compare, report, save-best and a run-ablation that finds its run done: no TensorFlow
    or Keras; no MLflow or scikit-learn either (the store is read directly, the data split is
    known from the split memo). Their times are bench/readonly.py's figures."""
    tiny = ["--epochs", "1", "--set", "data.subset=240"]
    tune = ["tune", "baseline", "--trials", "1", "--pruner", "none", *tiny]
    for setup in (["run-ablation", "baseline", *tiny], tune):
        done = run_cli(setup, project)
        assert done.returncode == 0, done.stderr
    readers = {
        ("compare", "--subset", "240"): (),
        ("compare", "--subset", "240", "--format", "csv"): (),
        ("report", "--subset", "240", "--format", "html", "--out", "report.html"): (),
        ("run-ablation", "baseline", *tiny): (),
        ("save-best", "baseline", "baseline_best", *tiny, "--force"): ("optuna",),
    }
    for args, allowed in readers.items():
        assert [m for m in _heavy_modules(list(args), project) if m not in allowed] == [], args
        done = run_cli(list(args), project)
        assert done.returncode == 0, done.stderr
    assert "already done" in run_cli(["run-ablation", "baseline", *tiny], project).stdout


JAX_SCRIPT = """
import sys


class NoTensorFlow:  # a machine with JAX and no TensorFlow
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("TensorFlow is hidden from this test")


sys.meta_path.insert(0, NoTensorFlow())
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from harness.data import sources as data
from harness.training import train
from harness.entries.registry import Registry
spec = Registry({root!r}).resolve("final", ["data.subset=240", "training.epochs=2"]).spec
dataset = data.load("digits", 0.25, 240, 0)
model = train.build(spec, dataset)
result = train.fit(spec, dataset, model, verbose=0)
assert result.epochs_run == 2 and result.history["loss"][1] == result.history["loss"][1]
assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
print("JAX-OK", model.count_params(), result.history["val_accuracy"])
"""


PIPELINES_SCRIPT = """
import sys
{hide}
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from harness.data import sources as data
from harness.training import train
from harness.entries.registry import Registry
histories = {{}}
for pipeline in ("tf_data", "numpy"):  # the default resolves to the device on JAX
    tiny = ["data.subset=240", "training.epochs=2", f"training.pipeline={{pipeline}}"]
    spec = Registry({root!r}).resolve("final", tiny).spec
    assert spec.training.class_weight is not None  # the device path carries them as sample weights
    dataset = data.load("digits", 0.25, 240, 0)
    result = train.fit(spec, dataset, train.build(spec, dataset), verbose=0)
    histories[result.pipeline] = result.history
print("PIPELINES", sorted(histories))
for key in ("loss", "val_loss", "val_accuracy"):
    print(key, histories["device"][key], histories["numpy"][key])
    assert max(abs(a - b) for a, b in zip(histories["device"][key], histories["numpy"][key])) < 1e-4, key
print("SAME")
"""


@pytest.mark.slow
@needs_jax
def test_on_jax_the_data_lives_on_the_device_and_trains_as_from_the_host():
    """The same batches, in the same order, with the same class weights: the device pipeline's
    run is the host pipeline's run."""
    script = PIPELINES_SCRIPT.format(hide=HIDE_TENSORFLOW, root=str(REPO))
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "PIPELINES ['device', 'numpy']" in result.stdout and "SAME" in result.stdout, result.stdout


def test_data_goes_to_the_device_only_where_it_fits():
    from harness.data.device_batches import DEVICE_SHARE, fits_on_device

    free = 80 * 2**30  # an H100
    assert fits_on_device(150 * 2**20, free)  # CIFAR-10 as uint8
    assert not fits_on_device(int(DEVICE_SHARE * free) + 1, free)
    assert fits_on_device(int(DEVICE_SHARE * free), free)


@pytest.mark.slow
@needs_jax
def test_the_final_entry_trains_on_the_jax_backend_without_tensorflow():
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT.format(root=str(REPO))], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "JAX-OK" in result.stdout


def test_auto_precision_follows_the_device():
    from harness.training.device import auto_precision

    assert auto_precision("gpu", "tensorflow", frozenset()) == "mixed_float16"  # capability unknown
    assert auto_precision("gpu", "jax", frozenset({"amx_bf16"}), 7.5) == "mixed_float16"  # a T4: no bfloat16 cores
    assert auto_precision("gpu", "jax", frozenset(), 9.0) == "mixed_bfloat16"  # an H100
    assert auto_precision("cpu", "tensorflow", frozenset({"avx2", "avx512f"})) == "float32"
    assert auto_precision("cpu", "tensorflow", frozenset({"avx512f", "amx_bf16"})) == "mixed_bfloat16"
    assert auto_precision("cpu", "jax", frozenset({"amx_bf16"})) == "float32"  # measured under TensorFlow only


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_the_output_layer_in_float32(precision):
    import keras
    import numpy as np

    from harness.data import sources as data
    from harness.entries.registry import Registry
    from harness.training import train

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


HIDE_TENSORFLOW = """
import sys


class NoTensorFlow:  # a GPU machine's image: JAX, no TensorFlow
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("TensorFlow is hidden from this test")


sys.meta_path.insert(0, NoTensorFlow())
"""


@pytest.mark.slow
@needs_jax
def test_the_gpu_script_runs_end_to_end_on_jax_without_tensorflow(tmp_path):
    """bench/gpu.py --tiny, the device check's dry run: run-ablation, select, report and the
    plain Keras script, every process with TensorFlow hidden (sitecustomize) and Keras on JAX."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(10):
        folder = tmp_path / "images" / "train" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(80):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            pixels[..., label % 3] = 200  # something to learn
            Image.fromarray(pixels).save(folder / f"{i}.png")
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(HIDE_TENSORFLOW)
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": f"{tmp_path / 'hide'}:{REPO}",
        "HARNESS_CACHE": str(tmp_path / "cache"),
    }
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(REPO / "bench" / "gpu.py"),
        "--data",
        str(tmp_path / "images"),
        "--tiny",
        "--out",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "on cpu" in result.stdout and "ratio" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["harness"]["images_per_second"]) == 2 and len(summary["plain"]["images_per_second"]) == 2
    assert 0 <= summary["harness"]["test_accuracy"] <= 1
    assert summary["harness"]["pipeline"] == "device"  # the arrays in (here: the CPU's) device memory
    assert summary["study"]["cells_finished"] == summary["study"]["cells_planned"] == 4, summary["study"]
    assert "study: 4 of 4 cells" in result.stdout
    assert (out / "report.html").read_text().startswith("<!doctype html>") and (
        out / "mlruns.tar.gz"
    ).stat().st_size > 0
