"""The batches that feed training and evaluation, in splits.epoch_order, through one of
three pipelines (`choose`): tf.data over the in-memory arrays where TensorFlow is the
backend (index batches gathered from the arrays, prefetched); on JAX, the arrays put in
device memory once and each batch gathered there (device_batches) where they fit; else a
Keras PyDataset over the host arrays (batches.EpochBatches). Imported only by the training
core."""

from __future__ import annotations

from typing import Optional

import numpy as np

from harness.data.splits import Split, epoch_order

PIPELINES = ("tf_data", "device", "numpy")


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def choose(training, train: Split, val: Split, num_classes: int) -> str:
    """Which pipeline feeds this run. training.pipeline numpy: host batches. Otherwise, on
    Keras's JAX backend: the device where train and validation fit (device_batches.
    fits_on_device), else host batches; on TensorFlow: tf.data."""
    import keras

    if training.pipeline == "numpy":
        return "numpy"
    if keras.backend.backend() == "jax":
        from harness.data.device_batches import fits_on_device

        labels = (len(train) + len(val)) * num_classes * 4  # one-hot float32
        return "device" if fits_on_device(train.x.nbytes + val.x.nbytes + labels + 4 * len(train)) else "numpy"
    return "tf_data" if _have_tensorflow() else "numpy"


def training_batches(
    split: Split,
    num_classes: int,
    training,
    first_epoch: int = 0,
    *,
    kind: str,
    class_weights: Optional[dict[int, float]] = None,
):
    """(batches, steps per epoch) for epochs first_epoch .. training.epochs-1, each shuffled by
    epoch_order with training.seed, through pipeline `kind` (choose). On the device the class
    weights travel as per-image sample weights; the other pipelines leave them to Keras."""
    batch_size, seed = training.batch_size, training.seed
    steps = max(1, -(-len(split) // batch_size))
    labels = one_hot(split.y, num_classes)
    if kind == "device":
        from harness.data.device_batches import DeviceBatches

        weights = None
        if class_weights is not None:
            weights = np.asarray([class_weights[c] for c in range(num_classes)], dtype=np.float32)[split.y]
        return DeviceBatches(split.x, labels, batch_size, seed, first_epoch, sample_weights=weights), steps
    if kind == "numpy":
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
    """Validation or test data in order: a batched tf.data stream, batches on the device, or
    the arrays."""
    x, y = split.x, one_hot(split.y, num_classes)
    if kind == "device":
        from harness.data.device_batches import DeviceBatches

        return DeviceBatches(x, y, batch_size)
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
