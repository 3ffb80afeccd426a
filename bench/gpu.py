"""The report's final model on a GPU machine with JAX and no TensorFlow: the harness against
a plain Keras-on-JAX script, on the CIFAR-10 training images. Run by bench/gpu.sh there.

    python bench/gpu.py --data /tmp/cifar --out $OUT [--tiny]

(a) `harness run-ablation final` on the whole pool (its own 20% test split carved off, the
rest split 90/10 into train and validation), up to the entry's 100 epochs with its early
stopping, then `harness select` (one test) and `harness report`; (b) the same model written
as a plain Keras script, on the same arrays, for 5 epochs. Prints the device, images/s per
epoch of both, epochs run, best validation and test accuracy, wall times; copies the MLflow
store (without model files) and the report to --out. --tiny: 600 images, 2 epochs (a dry run
of the whole script on any machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def harness(project: Path, *args: str) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "harness", *args], cwd=project, text=True, capture_output=True)
    print(f"$ harness {' '.join(args)}  ({time.perf_counter() - started:.0f} s, exit {result.returncode})", flush=True)
    tail = "\n".join(line for line in result.stdout.splitlines() if not line.startswith(("Epoch ", " ")))[-2500:]
    print(tail + ("\n" + result.stderr[-1500:] if result.returncode else ""), flush=True)
    if result.returncode != 0:
        raise SystemExit(f"harness {args[0]} failed")
    return result


def device_line() -> str:
    import jax

    devices = jax.devices()
    kinds = ", ".join(sorted({getattr(d, "device_kind", str(d)) for d in devices}))
    return f"JAX {jax.__version__} on {jax.default_backend()}: {len(devices)} x {kinds}"


def plain_keras(data_dir: str, subset_args: list[str], epochs: int, precision: str) -> dict:
    """The final model as a plain Keras script (float arrays in, model.fit), same split."""
    import keras
    import numpy as np

    from harness.data import sources as data
    from harness.entries.registry import Registry

    spec = Registry(REPO).resolve("final", [f"data.source=folder:{data_dir}", *subset_args]).spec
    d = spec.data
    dataset = data.load(d.source, d.val_fraction, d.subset, d.seed)
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential(
        [keras.Input(dataset.input_shape), layers.RandomTranslation(0.05, 0.05), layers.RandomFlip("horizontal")]
    )
    for filters, dropout in ((64, 0.1), (128, 0.2), (256, 0.5)):
        for _ in range(2):
            model.add(layers.Conv2D(filters, 3, padding="same"))
            model.add(layers.BatchNormalization())
            model.add(layers.Activation("relu"))
        model.add(layers.MaxPooling2D(2))
        model.add(layers.Dropout(dropout))
    model.add(layers.Flatten())
    model.add(layers.Dense(128, kernel_regularizer=keras.regularizers.L2(0.005)))
    model.add(layers.BatchNormalization())
    model.add(layers.Activation("relu"))
    model.add(layers.Dropout(0.4))
    model.add(layers.Dense(dataset.num_classes))
    model.add(layers.Activation("softmax", dtype="float32"))
    model.compile(
        optimizer=keras.optimizers.Adam(), loss=keras.losses.CategoricalFocalCrossentropy(), metrics=["accuracy"]
    )
    x = dataset.train.x.astype(np.float32) / 255.0
    y = keras.utils.to_categorical(dataset.train.y, dataset.num_classes)
    seconds: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    xv = dataset.val.x.astype(np.float32) / 255.0
    yv = keras.utils.to_categorical(dataset.val.y, dataset.num_classes)
    history = model.fit(x, y, batch_size=128, epochs=epochs, validation_data=(xv, yv), callbacks=[Timer()], verbose=2)
    rates = [len(x) / s for s in seconds]
    return {
        "images_per_second": rates,
        "best_val_accuracy": max(history.history["val_accuracy"]),
        "train_images": len(x),
    }


def harness_epochs(project: Path) -> dict:
    """Per-epoch images/s, epochs run, best validation accuracy of the harness's final run."""
    from mlflow import MlflowClient

    from harness.tracking.uri import default_tracking_uri

    client = MlflowClient(default_tracking_uri(project))
    experiment = next(e for e in client.search_experiments() if e.name != "Default")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'run'")
    (final,) = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'final'")
    seconds = [
        p.value for p in sorted(client.get_metric_history(run.info.run_id, "epoch_seconds"), key=lambda p: p.step)
    ]
    train = json.loads(client.get_run(run.info.run_id).inputs.dataset_inputs[0].dataset.profile)["num_rows"]
    return {
        "images_per_second": [train / s for s in seconds],
        "epochs_run": int(run.data.metrics["epochs_run"]),
        "best_val_accuracy": run.data.metrics["best_val_accuracy"],
        "test_accuracy": final.data.metrics["test_accuracy"],
        "precision": run.data.tags.get("harness.resolved.precision"),
        "train_images": train,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the unpacked CIFAR-10 folder (train/<class>/*.jpg)")
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu-out"))
    parser.add_argument("--tiny", action="store_true", help="600 images, 2 epochs: a dry run of the whole script")
    parser.add_argument("--plain-epochs", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    print(device_line(), flush=True)
    project = Path("/tmp/gpu-project")
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    shutil.copytree(REPO / "ablations", project / "ablations")
    source = ["--dataset", f"folder:{args.data}"]
    subset = ["--set", "data.subset=600", "--epochs", "2"] if args.tiny else []
    train_started = time.perf_counter()
    harness(project, "run-ablation", "final", *source, *subset)
    harness_seconds = time.perf_counter() - train_started
    scope = ["--subset", "600", "--epochs", "2"] if args.tiny else []
    harness(project, "select", "final", *source, *scope)
    harness(project, "report", "--format", "html", *source, *scope, "--out", str(project / "report.html"))
    ours = harness_epochs(project)
    plain = plain_keras(
        args.data, ["data.subset=600"] if args.tiny else [], 2 if args.tiny else args.plain_epochs, ours["precision"]
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(project / "report.html", out / "report.html")
    with tarfile.open(out / "mlruns.tar.gz", "w:gz") as archive:
        archive.add(
            project / "mlruns",
            "mlruns",
            filter=lambda m: None if "model" in Path(m.name).name or "backups" in m.name else m,
        )
    summary = {
        "device": device_line(),
        "harness": ours,
        "plain": plain,
        "harness_seconds": harness_seconds,
        "wall_seconds": time.perf_counter() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    fastest = lambda rates: max(rates[1:] or rates)  # noqa: E731 - the first epoch compiles
    print(f"\n{summary['device']}")
    print(
        f"harness: {ours['train_images']} train images, precision {ours['precision']}, {ours['epochs_run']} epochs in "
        f"{harness_seconds:.0f} s (run-ablation, start to end); images/s per epoch "
        f"{', '.join(f'{r:.0f}' for r in ours['images_per_second'])}"
    )
    print(f"plain Keras on JAX: images/s per epoch {', '.join(f'{r:.0f}' for r in plain['images_per_second'])}")
    ours_best, plain_best = fastest(ours["images_per_second"]), fastest(plain["images_per_second"])
    print(
        f"fastest epoch after the first: harness {ours_best:.0f} images/s, plain {plain_best:.0f} "
        f"(ratio {ours_best / plain_best:.3f})"
    )
    print(
        f"best val_accuracy {ours['best_val_accuracy']:.4f}; test accuracy {ours['test_accuracy']:.4f} "
        f"(the report: 0.8963); wall time {summary['wall_seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
