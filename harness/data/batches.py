"""Shuffled training batches from in-memory arrays as a Keras PyDataset: the input path for
backends without TensorFlow (Keras on JAX) and for training.pipeline: numpy."""

from __future__ import annotations

import keras

from harness.data.splits import epoch_order


class EpochBatches(keras.utils.PyDataset):
    """One epoch of batches in data.epoch_order; Keras calls on_epoch_end, which moves to
    the next epoch's order. Class weights work as with arrays (Keras maps them)."""

    def __init__(self, x, y, batch_size: int, seed: int, first_epoch: int):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.epoch = first_epoch
        self.order = epoch_order(len(y), seed, first_epoch)

    def __len__(self) -> int:
        return max(1, -(-len(self.y) // self.batch_size))

    def __getitem__(self, index: int):
        taken = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.x[taken], self.y[taken]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = epoch_order(len(self.y), self.seed, self.epoch)
