"""prepare / build / fit: one entry's training, knowing nothing of MLflow or Optuna.

Tracking, pruning and checkpoints come in as Keras callbacks passed to `fit`, which keeps
`fit` usable alone and its overhead measurable against a plain `model.fit`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import keras
import numpy as np

from harness.data import pipeline
from harness.data.sources import Dataset
from harness.data.splits import is_class
from harness.entries.spec import Spec
from harness.errors import HarnessError
from harness.interrupts import GUARD
from harness.training.callbacks import EpochTimer, StopOnNaN, StopOnSignal
from harness.training.device import device_kind, resolve_precision, set_determinism
from harness.training.model import build_model

BN_SETTLE_STEPS = 500  # README, batch-norm momentum: momentum-0.99 statistics lag for ~500 steps
BN_AUTO_MIN_STEPS = 50  # steps per epoch from which "auto" keeps Keras's 0.99


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says at which epoch."""


@dataclass
class FitResult:
    history: dict[str, list[float]]
    epochs_run: int
    train_seconds: float
    images_per_second: float
    epoch_seconds: list[float] = field(default_factory=list)
    stopped_early: bool = False
    pipeline: str = ""  # what fed the batches: tf_data, device or numpy (pipeline.choose)


def resolve_bn_momentum(spec: Spec, train_images: int) -> float:
    """model.bn_momentum, with "auto" = 0.99 (Keras, the report) when an epoch has at least
    BN_AUTO_MIN_STEPS steps, else 0.9 so short runs are not held at chance by stale averages."""
    if spec.model.bn_momentum != "auto":
        return float(spec.model.bn_momentum)
    steps_per_epoch = math.ceil(train_images / spec.training.batch_size)
    return 0.99 if steps_per_epoch >= BN_AUTO_MIN_STEPS else 0.9


def resolved_settings(spec: Spec, data: Dataset) -> dict[str, Any]:
    """The values behind every "auto" in the spec, as this machine and data resolve them."""
    return {
        "bn_momentum": resolve_bn_momentum(spec, len(data.train)),
        "pipeline": pipeline.choose(spec.training, data.train, data.val, data.num_classes),
        "precision": resolve_precision(spec),
        "jit_compile": spec.training.jit_compile,
        "backend": keras.backend.backend(),
        "device": device_kind(),
    }


def prepare(spec: Spec) -> None:
    """Seed every generator, set the precision policy and deterministic ops; call before
    building the model. Clears Keras's global state first, so many models in one process
    (tune, seeds, ablate) neither accumulate memory nor retrace each other's functions."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.training.seed)
    keras.mixed_precision.set_global_policy(resolve_precision(spec))
    set_determinism(spec.training.deterministic)


def build(spec: Spec, data: Dataset, root: Optional[Path] = None) -> keras.Model:
    """prepare + build_model + compile: a model ready to fit. Bad settings raise HarnessError.
    `root`: the project, where a model.builder's module is found."""
    prepare(spec)
    model_spec = spec.model.model_copy(update={"bn_momentum": resolve_bn_momentum(spec, len(data.train))})
    try:
        model = build_model(
            model_spec,
            data.input_shape,
            data.num_classes,
            seed=spec.training.seed,
            input_dtype=data.input_dtype,
            root=root,
        )
    except ValueError as exc:  # Keras's own shape checks, beyond what geometry.check sees
        raise HarnessError(f"cannot build the model: {str(exc).splitlines()[0][:200]}") from None
    model.compile(
        optimizer=make_optimizer(spec),
        loss=make_loss(spec),
        metrics=["accuracy"],
        jit_compile=spec.training.jit_compile,
    )
    return model


def make_optimizer(spec: Spec) -> keras.optimizers.Optimizer:
    o = spec.optimizer
    if o.name == "sgd":
        return keras.optimizers.SGD(learning_rate=o.learning_rate, momentum=o.momentum)
    if o.name == "adam":
        return keras.optimizers.Adam(learning_rate=o.learning_rate)
    if o.name == "adamw":
        return keras.optimizers.AdamW(learning_rate=o.learning_rate, weight_decay=o.weight_decay or 0.004)
    return keras.optimizers.RMSprop(learning_rate=o.learning_rate, momentum=o.momentum)


def make_loss(spec: Spec) -> keras.losses.Loss:
    loss = spec.loss
    if loss.name == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            alpha=loss.alpha, gamma=loss.gamma, label_smoothing=loss.label_smoothing
        )
    return keras.losses.CategoricalCrossentropy(label_smoothing=loss.label_smoothing)


def class_weights(spec: Spec, labels: np.ndarray, class_names: list[str]) -> Optional[dict[int, float]]:
    """scikit-learn's balanced weights, then the entry's boosts (by class index or name)."""
    cw = spec.training.class_weight
    if cw is None:
        return None
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.arange(len(class_names))
    present = np.unique(labels)
    weights = dict(zip(present.tolist(), compute_class_weight(cw.mode, classes=present, y=labels)))
    weights = {int(c): float(weights.get(c, 1.0)) for c in classes}
    for key, factor in cw.boost.items():
        if not is_class(key, class_names):
            raise HarnessError(f"training.class_weight.boost: no class {key!r} (classes: {', '.join(class_names)})")
        by_index = isinstance(key, int) or (key.isdigit() and key not in class_names)
        weights[int(key) if by_index else class_names.index(key)] *= factor
    return weights


def core_callbacks(spec: Spec) -> list[keras.callbacks.Callback]:
    """Early stopping and the LR schedule, as the spec asks."""
    callbacks: list[keras.callbacks.Callback] = []
    t = spec.training
    if t.lr_schedule is not None:
        s = t.lr_schedule
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=s.monitor, factor=s.factor, patience=s.patience, min_lr=s.min_lr, min_delta=s.min_delta
            )
        )
    if t.early_stopping is not None:
        e = t.early_stopping
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=e.monitor,
                patience=e.patience,
                mode=e.mode,
                min_delta=e.min_delta,
                restore_best_weights=e.restore_best_weights,
            )
        )
    return callbacks


def batch_norm_warning(spec: Spec, train_images: int) -> Optional[str]:
    """A warning when a run is too short for batch-norm moving averages to settle."""
    uses_bn = spec.model.arch != "cnn" or spec.model.batch_norm or any(d.batch_norm for d in spec.model.dense)
    momentum = resolve_bn_momentum(spec, train_images)
    if not uses_bn or momentum < 0.95:
        return None
    steps = math.ceil(train_images / spec.training.batch_size) * spec.training.epochs
    if steps >= BN_SETTLE_STEPS:
        return None
    return (
        f"{steps} training steps at most, fewer than the ~{BN_SETTLE_STEPS} that batch-norm statistics "
        f"need at momentum {momentum}: validation accuracy will lag "
        f"(set model.bn_momentum=0.9 for short runs)"
    )


def fit(
    spec: Spec,
    data: Dataset,
    model: keras.Model,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    *,
    verbose: Any = None,
    initial_epoch: int = 0,
) -> FitResult:
    """Train `model` on `data` as the spec says, from `initial_epoch` (a resumed run).
    Early stopping and the LR schedule come from the spec (core_callbacks) unless
    `callbacks` holds its own: a checkpoint that restores their counters passes them in.
    Raises TrainingDiverged on a NaN loss and Interrupted once a signal arrived."""
    t = spec.training
    kind = pipeline.choose(t, data.train, data.val, data.num_classes)
    weights = class_weights(spec, data.train.y, data.class_names)
    train, steps = pipeline.training_batches(
        data.train, data.num_classes, t, initial_epoch, kind=kind, class_weights=weights
    )
    val = pipeline.evaluation_batches(data.val, data.num_classes, t.batch_size, kind)
    timer, nan_guard = EpochTimer(), StopOnNaN()
    stateful = (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau)
    core = [] if any(isinstance(c, stateful) for c in callbacks) else core_callbacks(spec)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    started = time.perf_counter()
    GUARD.check()
    history = model.fit(
        train,
        validation_data=val,
        epochs=t.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps,
        shuffle=False,  # the batches come in epoch_order already
        class_weight=None if kind == "device" else weights,  # on the device: in the batches
        callbacks=[StopOnSignal(), timer, nan_guard, *core, *callbacks],
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    GUARD.check()
    if nan_guard.nan_epoch is not None:
        raise TrainingDiverged(f"loss became NaN at epoch {nan_guard.nan_epoch}")
    epochs_run = len(history.history.get("loss", []))
    images = len(data.train) * epochs_run
    return FitResult(
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        epochs_run=epochs_run,
        train_seconds=seconds,
        images_per_second=images / sum(timer.seconds) if timer.seconds else 0.0,
        epoch_seconds=list(timer.seconds),
        stopped_early=epochs_run + initial_epoch < t.epochs,
        pipeline=kind,
    )
