"""The report's final model on a GPU machine with JAX and no TensorFlow: the harness against
a plain Keras-on-JAX script, on the CIFAR-10 training images. Run by bench/gpu.sh there.

    python bench/gpu.py --data /tmp/cifar --out $OUT [--tiny]

(a) the report's final model written as a plain Keras script, on the same arrays, for 5 epochs
(its own process, so that each process has the GPU to itself); (b) `harness run-ablation final`
on the whole pool (its own 20% test split carved off, the rest split 90/10 into train and
validation), up to the entry's 100 epochs with its early stopping, then `harness select` (one
test) and `harness report`. A device call may run 10 minutes: if (a)'s epoch times say the
entry's epochs would not fit --budget-seconds, (b) runs with `--epochs N` for the N that fits,
and says so. Prints the device, images/s per epoch of both, epochs run, best validation and
test accuracy, wall times; writes summary.json after each stage (a call cut short still
returns what it measured) and copies the MLflow store (without model files) and the report to
--out. --tiny: 600 images, 2 epochs (a dry run of the whole script on any machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def harness(project: Path, *args: str, timeout: float | None = None) -> bool:
    """Runs the harness command; False when it ran past timeout and was stopped with Ctrl-C
    (SIGINT: the harness ends its run KILLED, with the epochs it finished logged)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", *args], cwd=project, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        finished = True
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
        finished = False
    elapsed = time.perf_counter() - started
    stopped = "" if finished else f", stopped at its {timeout:.0f} s limit"
    print(f"$ harness {' '.join(args)}  ({elapsed:.0f} s, exit {process.returncode}{stopped})", flush=True)
    tail = "\n".join(line for line in stdout.splitlines() if not line.startswith(("epoch ", " ")))[-2500:]
    print(tail + ("\n" + stderr[-1500:] if process.returncode else ""), flush=True)
    if finished and process.returncode != 0:
        raise SystemExit(f"harness {args[0]} failed")
    return finished


def device_line() -> str:
    import jax

    devices = jax.devices()
    kinds = ", ".join(sorted({getattr(d, "device_kind", str(d)) for d in devices}))
    return f"JAX {jax.__version__} on {jax.default_backend()}: {len(devices)} x {kinds}"


def final_model(input_shape: tuple, num_classes: int, augment: bool = True, keras_layers: bool = False):
    """The report's final model, layer by layer, as a plain Keras Sequential. Its augmentation
    is the harness's (harness/training/augment.py: plain Keras layers of keras.ops, the same
    pixels as Keras's), so the ratio measures the harness around the model, not the layers;
    keras_layers: Keras's RandomTranslation and RandomFlip instead (the probe's comparison)."""
    import keras

    from harness.training.augment import Flip, Translate

    layers = keras.layers
    augmentation = []
    if augment:
        augmentation = (
            [layers.RandomTranslation(0.05, 0.05), layers.RandomFlip("horizontal")]
            if keras_layers
            else [Translate(0.05), Flip("horizontal")]
        )
    model = keras.Sequential([keras.Input(input_shape), *augmentation])
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
    model.add(layers.Dense(num_classes))
    model.add(layers.Activation("softmax", dtype="float32"))
    return model


def plain_keras(data_dir: str, subset_args: list[str], epochs: int, deadline_seconds: float) -> dict:
    """The final model as a plain Keras script (float arrays in, model.fit), same split, at the
    precision the harness resolves for this machine; no epoch starts after deadline_seconds."""
    started = time.perf_counter()
    import keras
    import numpy as np

    from harness.data import sources as data
    from harness.entries.registry import Registry
    from harness.training.device import resolve_precision

    spec = Registry(REPO).resolve("final", [f"data.source=folder:{data_dir}", *subset_args]).spec
    d = spec.data
    dataset = data.load(d.source, d.val_fraction, d.subset, d.seed)
    precision = resolve_precision(spec)
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    model = final_model(dataset.input_shape, dataset.num_classes)
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
            if time.perf_counter() - started > deadline_seconds:
                self.model.stop_training = True

    xv = dataset.val.x.astype(np.float32) / 255.0
    yv = keras.utils.to_categorical(dataset.val.y, dataset.num_classes)
    history = model.fit(x, y, batch_size=128, epochs=epochs, validation_data=(xv, yv), callbacks=[Timer()], verbose=2)
    rates = [len(x) / s for s in seconds]
    return {
        "images_per_second": rates,
        "epoch_seconds": seconds,
        "precision": precision,
        "entry_epochs": spec.training.epochs,
        "device": device_line(),
        "best_val_accuracy": max(history.history["val_accuracy"]),
        "train_images": len(x),
    }


def harness_epochs(project: Path) -> dict:
    """Per-epoch images/s, epochs run, best validation accuracy of the harness's final run."""
    from mlflow import MlflowClient

    from harness.tracking.uri import default_tracking_uri

    client = MlflowClient(default_tracking_uri(project))
    experiment = next((e for e in client.search_experiments() if e.name != "Default"), None)
    if experiment is None:  # stopped before the store was opened
        return {"images_per_second": [], "epochs_run": 0, "status": None}
    runs = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'run'")
    if not runs:  # stopped before its run began
        return {"images_per_second": [], "epochs_run": 0, "status": None}
    (run,) = runs
    finals = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'final'")
    seconds = [
        p.value for p in sorted(client.get_metric_history(run.info.run_id, "epoch_seconds"), key=lambda p: p.step)
    ]
    train = json.loads(client.get_run(run.info.run_id).inputs.dataset_inputs[0].dataset.profile)["num_rows"]
    return {
        "images_per_second": [train / s for s in seconds],
        "status": run.info.status,
        "epochs_run": len(seconds),
        "best_val_accuracy": run.data.metrics.get("best_val_accuracy"),
        "test_accuracy": finals[0].data.metrics["test_accuracy"] if finals else None,
        "precision": run.data.tags.get("harness.resolved.precision"),
        "pipeline": run.data.params.get("resolved.pipeline"),
        "train_images": train,
    }


def probe(seconds_per_variant: float = 20) -> None:
    """Where JAX runs and how fast the final model trains there on random uint8-range images,
    with and without its augmentation layers: the check for a call that ran at CPU speed."""
    import jax
    import keras
    import numpy as np

    print(device_line(), f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS')}", flush=True)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2048, 32, 32, 3)).astype(np.float32) / 255.0
    y = keras.utils.to_categorical(rng.integers(0, 10, 2048), 10)
    variants = (
        ("harness's augmentation", True, False),
        ("keras.layers augmentation", True, True),
        ("none", False, False),
    )
    for precision in ("mixed_bfloat16", "float32"):
        for label, augment, keras_layers in variants:
            keras.mixed_precision.set_global_policy(precision)
            model = final_model((32, 32, 3), 10, augment, keras_layers)
            model.compile(optimizer="adam", loss="categorical_crossentropy")
            model.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)  # compile
            started, images = time.perf_counter(), 0
            while time.perf_counter() - started < seconds_per_variant / 2 and images < 4 * len(x):
                model.fit(x, y, batch_size=128, epochs=1, verbose=0)
                images += len(x)
            rate = images / (time.perf_counter() - started)
            print(f"{precision}, {label}: {rate:.0f} images/s", flush=True)
    print(jax.devices()[0].platform, flush=True)


STUDY_MIN_SECONDS = 150  # a study of several workers needs this much of the call to land cells at all
STUDY_SUBSET, STUDY_EPOCHS, STUDY_WORKERS = 10_000, 10, 4  # 15 steps x 2 seeds on a quarter of the pool


def study_stage(project: Path, source: list[str], tiny: bool, seconds: float) -> dict:
    """`harness study final --seeds 2 --workers 4` on a 10k subset, capped at 10 epochs a
    cell, stopped with Ctrl-C at `seconds` (its cells then continue on a rerun): several
    workers sharing the one GPU. --tiny: the first two steps on 600 images, one epoch."""
    from mlflow import MlflowClient

    from harness.tracking.uri import default_tracking_uri

    target, subset, epochs = ("same_padding", 600, 1) if tiny else ("final", STUDY_SUBSET, STUDY_EPOCHS)
    workers = 2 if tiny else STUDY_WORKERS
    args = ["study", target, "--seeds", "2", "--workers", str(workers), *source]
    args += ["--set", f"data.subset={subset}", "--epochs", str(epochs)]
    started = time.perf_counter()
    finished = harness(project, *args, timeout=seconds)
    wall = time.perf_counter() - started
    client = MlflowClient(default_tracking_uri(project))
    experiments = [e.experiment_id for e in client.search_experiments() if f"subset {subset}" in e.name]
    cells = client.search_runs(experiments, "tags.`harness.kind` = 'seed' and attributes.status = 'FINISHED'")
    planned = 2 * (2 if tiny else 15)
    line = f"study: {len(cells)} of {planned} cells in {wall:.0f} s with {workers} workers on one device"
    print(line + ("" if finished else " (stopped at the budget; a rerun continues it)"), flush=True)
    return {
        "cells_finished": len(cells),
        "cells_planned": planned,
        "seconds": wall,
        "workers": workers,
        "finished": finished,
        "subset": subset,
        "epochs_per_cell": epochs,
    }


def epochs_that_fit(plain: dict, seconds_left: float, entry_epochs: int) -> int:
    """How many harness epochs fit in seconds_left, from the plain script's epoch times: the
    first epoch's extra (compilation) once, then the slowest later epoch with a 30% margin."""
    later = plain["epoch_seconds"][1:] or plain["epoch_seconds"]
    compile_seconds = max(0.0, plain["epoch_seconds"][0] - min(later))
    fit = int((seconds_left - compile_seconds) / (1.3 * max(later)))
    return max(1, min(entry_epochs, fit))


def write_summary(out: Path, summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the unpacked CIFAR-10 folder (train/<class>/*.jpg)")
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu-out"))
    parser.add_argument("--tiny", action="store_true", help="600 images, 2 epochs: a dry run of the whole script")
    parser.add_argument("--plain-epochs", type=int, default=5)
    parser.add_argument(
        "--budget-seconds", type=float, default=480, help="this script's wall time: a device call may run 600 s"
    )
    parser.add_argument("--plain-only", metavar="JSON", help=argparse.SUPPRESS)  # (a) in its own process
    parser.add_argument("--probe", action="store_true", help="where JAX runs and the model's speed on random data")
    args = parser.parse_args()
    if args.probe:
        probe()
        return
    subset_args = ["data.subset=600"] if args.tiny else []
    if args.plain_only:
        share = 0.4  # of the budget for the baseline: the harness run is what the call is for
        deadline = float("inf") if args.tiny else share * args.budget_seconds  # a dry run runs every epoch
        plain = plain_keras(args.data, subset_args, 2 if args.tiny else args.plain_epochs, deadline)
        Path(args.plain_only).write_text(json.dumps(plain))
        return
    started = time.perf_counter()
    out = Path(args.out)
    summary: dict = {}

    plain_json = Path("/tmp/gpu-plain.json")
    command = [sys.executable, __file__, "--data", args.data, "--plain-only", str(plain_json)]
    command += ["--budget-seconds", str(args.budget_seconds)]
    subprocess.run(command + (["--tiny"] if args.tiny else []), check=True)
    plain = json.loads(plain_json.read_text())
    summary.update(device=plain["device"], plain=plain)
    write_summary(out, summary)
    print(plain["device"], flush=True)
    print(f"plain Keras on JAX: images/s per epoch {', '.join(f'{r:.0f}' for r in plain['images_per_second'])}")

    project = Path("/tmp/gpu-project")
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    shutil.copytree(REPO / "ablations", project / "ablations")
    source = ["--dataset", f"folder:{args.data}"]
    entry_epochs = 2 if args.tiny else plain["entry_epochs"]
    reserve = 120  # the run's own evaluation and logging, select, report and the copies
    epochs = epochs_that_fit(plain, args.budget_seconds - (time.perf_counter() - started) - reserve, entry_epochs)
    scope = ["--subset", "600", "--epochs", str(epochs)] if args.tiny else ["--epochs", str(epochs)]
    summary["harness_epoch_cap"] = None if epochs == entry_epochs else epochs
    if epochs < entry_epochs:
        print(f"the entry's {entry_epochs} epochs would not fit the call: capped at {epochs} (--epochs)", flush=True)
    train_started = time.perf_counter()
    subset = ["--set", "data.subset=600"] if args.tiny else []
    limit = max(10.0, args.budget_seconds - (time.perf_counter() - started) - 60)
    finished = harness(project, "run-ablation", "final", *source, *subset, "--epochs", str(epochs), timeout=limit)
    harness_seconds = time.perf_counter() - train_started
    if finished:
        harness(project, "select", "final", *source, *scope)
        summary["minutes_to_test_accuracy"] = (time.perf_counter() - train_started) / 60
        harness(project, "report", "--format", "html", *source, *scope, "--out", str(project / "report.html"))
        shutil.copy(project / "report.html", out / "report.html")
    ours = harness_epochs(project)
    left = args.budget_seconds - (time.perf_counter() - started)
    if finished and left > (0 if args.tiny else STUDY_MIN_SECONDS):
        summary["study"] = study_stage(project, source, args.tiny, left - 30)
    with tarfile.open(out / "mlruns.tar.gz", "w:gz") as archive:
        archive.add(
            project / "mlruns",
            "mlruns",
            filter=lambda m: None if "model" in Path(m.name).name or "backups" in m.name else m,
        )
    summary.update(harness=ours, harness_seconds=harness_seconds, wall_seconds=time.perf_counter() - started)
    write_summary(out, summary)
    fastest = lambda rates: max(rates[1:] or rates)  # noqa: E731 - the first epoch compiles
    print(f"\n{summary['device']}")
    if not ours["images_per_second"]:
        raise SystemExit("the harness run finished no epoch inside the budget")
    print(
        f"harness: {ours['train_images']} train images, precision {ours['precision']}, {ours['epochs_run']} epochs in "
        f"{harness_seconds:.0f} s (run-ablation, start to end); images/s per epoch "
        f"{', '.join(f'{r:.0f}' for r in ours['images_per_second'])}"
    )
    print(
        f"plain Keras on JAX, precision {plain['precision']}: images/s per epoch "
        f"{', '.join(f'{r:.0f}' for r in plain['images_per_second'])}"
    )
    ours_best, plain_best = fastest(ours["images_per_second"]), fastest(plain["images_per_second"])
    print(
        f"fastest epoch after the first: harness {ours_best:.0f} images/s, plain {plain_best:.0f} "
        f"(ratio {ours_best / plain_best:.3f})"
    )
    capped = f", capped at {epochs} epochs to fit the call" if summary["harness_epoch_cap"] else ""
    if not finished:
        print(f"the run was stopped at the budget after {ours['epochs_run']} epochs (status {ours['status']})")
    else:
        print(
            f"best val_accuracy {ours['best_val_accuracy']:.4f}; test accuracy {ours['test_accuracy']:.4f} "
            f"(the report: 0.8963{capped}) in {summary['minutes_to_test_accuracy']:.1f} min from the start of "
            f"run-ablation to select's test; wall time {summary['wall_seconds']:.0f} s"
        )


if __name__ == "__main__":
    main()
