"""The training core's own Keras callbacks: epoch timing, the NaN guard, and stopping at
the next batch boundary once a signal arrived. Imports neither mlflow nor optuna."""

from __future__ import annotations

import math
import time
from typing import Optional

import keras

from harness.interrupts import GUARD


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch, training and validation together, also put in the epoch's
    logs as `epoch_seconds` for the callbacks after it (tracking)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        if logs is not None:
            logs["epoch_seconds"] = self.seconds[-1]


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras's TerminateOnNaN, remembering the (1-based) epoch where the loss went bad."""

    def __init__(self):
        super().__init__()
        self.nan_epoch: Optional[int] = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        if self.model.stop_training and self.nan_epoch is None and not GUARD.requested:
            self.nan_epoch = self._epoch

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if self.nan_epoch is None and loss is not None and not math.isfinite(loss):
            self.nan_epoch = epoch + 1
            self.model.stop_training = True


class StopOnSignal(keras.callbacks.Callback):
    """Ends fit, evaluate or predict at the next batch once SIGINT or SIGTERM arrived. The
    caller then sees GUARD.requested and raises Interrupted from ordinary code."""

    def _stop(self, *args, **kwargs):
        if GUARD.requested:
            self.model.stop_training = True
            self.model.stop_evaluating = True
            self.model.stop_predicting = True

    on_epoch_begin = _stop
    on_train_batch_end = _stop
    on_test_batch_end = _stop
    on_predict_batch_end = _stop


def epoch_line(epoch: int, epochs: int, logs: dict, learning_rate: Optional[float] = None) -> str:
    """One finished epoch as a line of at most 80 columns, with Keras's figures: loss and
    accuracy, then the validation's, the learning rate where a schedule moved it, seconds."""
    parts = [f"epoch {epoch}/{epochs}"]
    train = " ".join(
        f"{short} {logs[key]:.4f}" for key, short in (("loss", "loss"), ("accuracy", "acc")) if key in logs
    )
    val = " ".join(
        f"{short} {logs[key]:.4f}" for key, short in (("val_loss", "loss"), ("val_accuracy", "acc")) if key in logs
    )
    parts += [train, f"val {val}" if val else ""]
    if learning_rate is not None:
        parts.append("lr " + f"{learning_rate:.0e}".replace("e-0", "e-"))
    if "epoch_seconds" in logs:
        parts.append(f"{logs['epoch_seconds']:.1f}s")
    return "  ".join(p for p in parts if p)


class EpochLine(keras.callbacks.Callback):
    """The harness's one line per finished epoch (epoch_line) through `say`, in place of
    Keras's progress output; put it after the callbacks that log and back up the epoch, so
    the line means the epoch is recorded. An epoch cut short by a signal gets no line."""

    def __init__(self, say, epochs: int):
        super().__init__()
        self.say, self.epochs = say, epochs
        self._first_rate: Optional[float] = None

    def _rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_begin(self, logs=None):
        self._first_rate = self._rate()

    def on_epoch_end(self, epoch, logs=None):
        if GUARD.requested:
            return
        rate = self._rate()
        moved = self._first_rate is not None and not math.isclose(rate, self._first_rate)
        self.say(epoch_line(epoch + 1, self.epochs, logs or {}, rate if moved else None))
