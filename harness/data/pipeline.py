"""The batches that feed training and evaluation: tf.data over the in-memory arrays where
TensorFlow is installed (index batches gathered from the arrays, prefetched), else a Keras
PyDataset (batches.EpochBatches), each epoch in splits.epoch_order. Imported only by the
training core."""

from __future__ import annotations

import numpy as np

from harness.data.splits import Split, epoch_order


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def training_batches(split: Split, num_classes: int, training, first_epoch: int = 0):
    """(batches, steps per epoch) for epochs first_epoch .. training.epochs-1, each shuffled by
    epoch_order with training.seed. tf.data (index batches gathered from the arrays,
    prefetched) where TensorFlow is installed and training.pipeline is tf_data; else a Keras
    PyDataset over the arrays."""
    batch_size, seed = training.batch_size, training.seed
    steps = max(1, -(-len(split) // batch_size))
    labels = one_hot(split.y, num_classes)
    if training.pipeline == "numpy" or not _have_tensorflow():
        from harness.data.batches import EpochBatches

        return EpochBatches(split.x, labels, batch_size, seed, first_epoch), steps
    import tensorflow as tf

    epochs = range(first_epoch, max(training.epochs, first_epoch + 1))
    orders = np.stack([epoch_order(len(split), seed, e) for e in epochs])
    x, y = tf.convert_to_tensor(split.x), tf.convert_to_tensor(labels)
    indices = tf.data.Dataset.from_tensor_slices(orders).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
    )
    batches = indices.map(lambda i: (tf.gather(x, i), tf.gather(y, i)), num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE), steps


def evaluation_batches(split: Split, num_classes: int, batch_size: int, kind: str):
    """Validation or test data in order: a batched tf.data stream, or the arrays."""
    x, y = split.x, one_hot(split.y, num_classes)
    if kind == "numpy" or not _have_tensorflow():
        return x, y
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _have_tensorflow() -> bool:
    """Whether tf.data can be used (GPU machines often have JAX and no TensorFlow)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True
