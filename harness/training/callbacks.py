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
