"""The Keras callback that logs each finished epoch to MLflow: the bridge between the
training core (which knows no MLflow) and tracking (which imports no Keras)."""

from __future__ import annotations

import time

import keras
from mlflow import MlflowClient
from mlflow.entities import Metric

from harness.interrupts import GUARD


class EpochLogger(keras.callbacks.Callback):
    """One batched MLflow call per epoch: losses, accuracies, learning rate, epoch seconds.
    `step` is the epoch number (1-based), so resumed runs continue the curve; epochs up to
    `skip_through` were logged before an interruption and are not logged twice. An epoch cut
    short by a signal is not logged (nor backed up: checkpoint.Checkpoint).

    Synchronous on purpose: the epoch's metrics are committed before the checkpoint saves
    the epoch, so a kill -9 can never leave a backed-up epoch without its metrics (a gap on
    resume). It costs one SQLite write per epoch (milliseconds; bench/overhead.py)."""

    def __init__(self, client: MlflowClient, run_id: str, skip_through: int = 0):
        super().__init__()
        self.client, self.run_id, self.skip_through = client, run_id, skip_through

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 <= self.skip_through or GUARD.requested:
            return
        now = int(time.time() * 1000)
        values = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        metrics = [Metric(k, float(v), now, epoch + 1) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)
