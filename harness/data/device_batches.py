"""Batches sliced on the accelerator (Keras on JAX): the arrays go to device memory once, and
each step gathers its batch there, so nothing crosses from the host while training. For data
that fits (CIFAR-10 as uint8 is 150 MB; an H100 has 80 GB); pipeline.choose decides.

Imported only by the training core, and only where JAX is the backend."""

from __future__ import annotations

import functools
import os
from typing import Optional

import keras
import numpy as np

from harness.data.splits import epoch_order

DEVICE_SHARE = 0.25  # of the device's free memory: the rest is the model's (activations, optimizer)


def device_memory_free() -> Optional[int]:
    """Bytes free on JAX's first device (its limit less what is in use; a worker's slice
    where XLA_PYTHON_CLIENT_MEM_FRACTION sets one), the host's free memory for the CPU, or
    None where neither can be read."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def fits_on_device(nbytes: int, free: Optional[int] = None) -> bool:
    """Whether arrays of `nbytes` may live on the device: at most DEVICE_SHARE of its free
    memory (`free`, else read from the device; unknown: no)."""
    free = device_memory_free() if free is None else free
    return free is not None and nbytes <= DEVICE_SHARE * free


@functools.cache
def _gather(size: int):
    """A compiled gather of `size` rows from each array, at order[start : start + size]."""
    import jax

    def gather(arrays, order, start):
        taken = jax.lax.dynamic_slice_in_dim(order, start, size)
        return tuple(jax.numpy.take(a, taken, axis=0) for a in arrays)

    return jax.jit(gather)


class DeviceBatches(keras.utils.PyDataset):
    """Batches gathered on the device from arrays put there once: shuffled in
    data.epoch_order for training (Keras calls on_epoch_end, which moves to the next epoch's
    order), in order for evaluation (seed None). With `sample_weights` (one per image: class
    weights looked up once), each batch carries its weights, so Keras needs no class_weight
    (which it would map on the host, a copy each step)."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: Optional[int] = None,
        first_epoch: int = 0,
        sample_weights: Optional[np.ndarray] = None,
    ):
        super().__init__()
        import jax

        arrays = (x, y) if sample_weights is None else (x, y, sample_weights.astype(np.float32))
        self.arrays = tuple(jax.device_put(a) for a in arrays)
        self.count, self.batch_size, self.seed, self.epoch = len(y), batch_size, seed, first_epoch
        self.order = self._order()

    def _order(self):
        import jax

        if self.seed is None:
            return jax.device_put(np.arange(self.count, dtype=np.int32))
        return jax.device_put(epoch_order(self.count, self.seed, self.epoch).astype(np.int32))

    def __len__(self) -> int:
        return max(1, -(-self.count // self.batch_size))

    def __getitem__(self, index: int):
        start = index * self.batch_size
        size = min(self.batch_size, self.count - start)
        return _gather(size)(self.arrays, self.order, start)

    def on_epoch_end(self) -> None:
        if self.seed is not None:
            self.epoch += 1
            self.order = self._order()
