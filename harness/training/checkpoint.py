"""The whole training state, written atomically at the end of every finished epoch.

A resumed run must be the run it would have been, so the backup holds more than weights:
every model variable (weights, batch-norm statistics, the seed states of dropout and
augmentation layers), every optimizer variable (moments, iteration count, the learning rate
the scheduler set), the counters of early stopping and the LR scheduler (and early
stopping's best weights), and Python's and NumPy's random states. The batch order of each
epoch is a function of the seed and the epoch (data.epoch_order), so it needs no state.

Keras's BackupAndRestore keeps weights and optimizer only and writes them in place, so a
Ctrl-C during the write left a truncated file that could not be loaded. Here the state is
one .npz file written beside the old one, fsynced and renamed over it: a reader sees the
old state or the new one, never half of one.

Training core: imports neither mlflow nor optuna.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import keras
import numpy as np

from harness.interrupts import GUARD

STATE_FILE = "state.npz"
FORMAT = 1  # bump when the layout below changes; older backups are then refused


class CheckpointError(Exception):
    """A backup that cannot be restored in full; the message says why."""


def state_path(folder: Path) -> Path:
    return Path(folder) / STATE_FILE


def _stateful(callbacks: Sequence[keras.callbacks.Callback]) -> dict[str, keras.callbacks.Callback]:
    """The callbacks whose counters a resume must carry over, keyed by a stable name."""
    found = {}
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping):
            found["early_stopping"] = callback
        elif isinstance(callback, keras.callbacks.ReduceLROnPlateau):
            found["lr_schedule"] = callback
    return found


def _callback_state(name: str, callback) -> tuple[dict[str, Any], list[np.ndarray]]:
    if name == "early_stopping":
        scalars = {
            "wait": callback.wait,
            "stopped_epoch": callback.stopped_epoch,
            "best": _number(callback.best),
            "best_epoch": callback.best_epoch,
        }
        return scalars, list(callback.best_weights or [])
    return {"wait": callback.wait, "cooldown_counter": callback.cooldown_counter, "best": _number(callback.best)}, []


def _number(value) -> Optional[float]:
    return None if value is None else float(value)


def save(folder: Path, epochs_done: int, model: keras.Model, callbacks, identity: str) -> Path:
    """Write the state after `epochs_done` finished epochs; atomic (temp file, fsync, rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for i, variable in enumerate(model.variables):
        arrays[f"model_{i}"] = keras.ops.convert_to_numpy(variable)
    for i, variable in enumerate(model.optimizer.variables):
        arrays[f"optimizer_{i}"] = keras.ops.convert_to_numpy(variable)
    callback_meta = {}
    for name, callback in _stateful(callbacks).items():
        scalars, weights = _callback_state(name, callback)
        scalars["weights"] = len(weights)
        callback_meta[name] = scalars
        for i, array in enumerate(weights):
            arrays[f"{name}_weights_{i}"] = np.asarray(array)
    numpy_state = np.random.get_state()
    arrays["numpy_rng_keys"] = numpy_state[1]
    meta = {
        "format": FORMAT,
        "identity": identity,
        "epochs_done": epochs_done,
        "model_variables": len(model.variables),
        "optimizer_variables": len(model.optimizer.variables),
        "callbacks": callback_meta,
        "numpy_rng": [numpy_state[0], int(numpy_state[2]), int(numpy_state[3]), float(numpy_state[4])],
        "python_rng": _python_rng(),
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    target = state_path(folder)
    partial = folder / f".{STATE_FILE}.{os.getpid()}.tmp"
    with open(partial, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)
    _fsync_folder(folder)
    return target


def _python_rng() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load(folder: Path, identity: str) -> dict[str, Any]:
    """Read a backup, checking it is whole and belongs to this spec and data."""
    path = state_path(folder)
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except FileNotFoundError:
        raise CheckpointError(f"no backup at {path}") from None
    except (OSError, ValueError, KeyError, EOFError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"backup {path} is damaged ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"backup {path} has format {meta.get('format')}, this harness reads {FORMAT}")
    if meta.get("identity") != identity:
        raise CheckpointError(f"backup {path} belongs to another spec or dataset")
    return {"meta": meta, "arrays": arrays}


def restore(state: dict[str, Any], model: keras.Model) -> int:
    """Put a loaded backup into a freshly built, compiled model; returns the epochs done.
    Raises CheckpointError (and changes nothing) when any piece does not fit."""
    meta, arrays = state["meta"], state["arrays"]
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    pairs = _pairs("model", model.variables, meta["model_variables"], arrays)
    pairs += _pairs("optimizer", optimizer.variables, meta["optimizer_variables"], arrays)
    for variable, value in pairs:
        variable.assign(value)
    np.random.set_state(("MT19937", arrays["numpy_rng_keys"], *meta["numpy_rng"][1:]))
    version, internal, gauss = meta["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return int(meta["epochs_done"])


def _pairs(prefix: str, variables, expected: int, arrays: dict[str, np.ndarray]) -> list:
    if len(variables) != expected:
        raise CheckpointError(f"the backup has {expected} {prefix} variables, the model {len(variables)}")
    pairs = []
    for i, variable in enumerate(variables):
        value = arrays.get(f"{prefix}_{i}")
        if value is None or tuple(value.shape) != tuple(variable.shape):
            shape = None if value is None else tuple(value.shape)
            raise CheckpointError(
                f"{prefix} variable {i} ({variable.path}): backup shape {shape}, model {tuple(variable.shape)}"
            )
        pairs.append((variable, value))
    return pairs


class Checkpoint(keras.callbacks.Callback):
    """Saves the state at the end of every finished epoch and, when resuming, puts the
    callbacks' counters back after their own on_train_begin reset them. Put it after the
    early-stopping, scheduler and tracking callbacks: an epoch is logged, then saved."""

    def __init__(
        self, folder: Path, identity: str, peers: Sequence[keras.callbacks.Callback], resumed: Optional[dict] = None
    ):
        super().__init__()
        self.folder, self.identity, self.peers = Path(folder), identity, list(peers)
        self.resumed = resumed

    def on_train_begin(self, logs=None):
        if not self.resumed:
            return
        meta, arrays = self.resumed["meta"], self.resumed["arrays"]
        for name, callback in _stateful(self.peers).items():
            saved = meta["callbacks"].get(name)
            if saved is None:
                continue
            callback.wait = saved["wait"]
            callback.best = saved["best"]
            if name == "early_stopping":
                callback.stopped_epoch, callback.best_epoch = saved["stopped_epoch"], saved["best_epoch"]
                weights = [arrays[f"{name}_weights_{i}"] for i in range(saved["weights"])]
                callback.best_weights = weights or None
            else:
                callback.cooldown_counter = saved["cooldown_counter"]

    def on_epoch_end(self, epoch, logs=None):
        if GUARD.requested:  # a signal during the epoch: it did not finish, keep the last state
            return
        save(self.folder, epoch + 1, self.model, self.peers, self.identity)
