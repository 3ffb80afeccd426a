"""Pruning a trial from inside Keras: optuna-integration's KerasPruningCallback, with the
epoch kept for the MLflow run's reason. Imported only when a trial runs (it imports Keras)."""

from __future__ import annotations

import optuna
from optuna_integration import KerasPruningCallback

from harness.tracking.names import Tag


class PrunedAtEpoch(optuna.TrialPruned):
    """TrialPruned that ends its MLflow child run KILLED with the epoch in the reason: it
    carries errors.RunEnded's three attributes, and must stay an Optuna TrialPruned."""

    mlflow_status = "KILLED"
    mlflow_tags = {Tag.TRIAL_STATE: "PRUNED"}

    def __init__(self, epoch: int):
        super().__init__(f"pruned at epoch {epoch}")
        self.epoch = epoch
        self.reason = f"pruned at epoch {epoch}"


class PruningCallback(KerasPruningCallback):
    """optuna-integration's Keras callback, re-raising pruning as PrunedAtEpoch."""

    def on_epoch_end(self, epoch, logs=None):
        try:
            super().on_epoch_end(epoch, logs)
        except optuna.TrialPruned:
            raise PrunedAtEpoch(epoch + 1) from None
