"""Dataset sources, splits, the dataset fingerprint and the input pipeline.

Sources: `digits` (scikit-learn's bundled 8x8 digits), `cifar10` (Keras's download and
cache) and `folder:DIR` (an image-folder tree, decoded once and cached by content). Every
source yields a fixed test split, set apart before anything else and handed out only by
`load_test`; `load` returns the training pool split into train and validation.

Training core: imports neither mlflow nor optuna. TensorFlow is imported only for the
tf.data pipeline, so the rest also runs where Keras sits on JAX without TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import HarnessError

CIFAR10_NAMES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TEST_FRACTION = 0.2  # held-out share for sources that ship no test split (digits, folders)
TEST_SEED = 20240501  # fixed: the test split must never move with a spec's seeds


@dataclass(frozen=True)
class Split:
    """Images, shape (n, h, w, c), and integer labels. Photographs stay uint8 (0-255: the model
    scales them, model.build_model); digits come as float32 in [0, 1]."""

    x: np.ndarray
    y: np.ndarray  # integer labels

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class SplitFacts:
    """What identifies a train/validation split and what planning checks, without the arrays:
    kept in the split memo (split_memo.py) so a run found done needs no data loaded."""

    fingerprint: str  # of the images and labels actually used (after subset and split)
    input_shape: tuple[int, int, int]
    input_dtype: str
    class_names: list[str]
    sizes: tuple[int, int]  # train, validation


class Dataset:
    """The training pool of one source, split into train and validation. Its facts
    (fingerprint, shape, classes) may come from the split memo; the arrays then load on first
    use of `train` or `val`, and must match the fingerprint."""

    def __init__(self, source: str, facts: SplitFacts, splits: Optional[tuple[Split, Split]] = None, loader=None):
        """loader: () -> (train, val, class names), called on first use; forget: drops the
        memo these facts came from, when the loaded data contradicts them."""
        self.source, self.facts, self._loader = source, facts, loader
        self.forget = lambda: None
        if splits is not None:
            self.__dict__["splits"] = splits

    @cached_property
    def splits(self) -> tuple[Split, Split]:
        train, val, class_names = self._loader()
        if facts_of(train, val, class_names) != self.facts:
            self.forget()
            raise HarnessError(
                f"{self.source}: the data differs from the split memo's record of it (same listing, other "
                "content, or a damaged memo); the memo is dropped: run the command again"
            )
        return train, val

    @property
    def train(self) -> Split:
        return self.splits[0]

    @property
    def val(self) -> Split:
        return self.splits[1]

    @property
    def fingerprint(self) -> str:
        return self.facts.fingerprint

    @property
    def class_names(self) -> list[str]:
        return self.facts.class_names

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.facts.input_shape

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_dtype(self) -> str:
        """uint8 for photographs (the model scales them: a quarter of the memory and of the
        bytes a GPU is sent), float32 for sources that come as floats (digits)."""
        return self.facts.input_dtype


def load(source: str, val_fraction: float = 0.1, subset: Optional[int] = None, seed: int = 0) -> Dataset:
    """The training pool of `source`, optionally a stratified subset, split train/val. A split
    made before from the same source state is known from the split memo without loading."""
    from . import split_memo

    memo_key = split_memo.key(source, val_fraction, subset, seed)
    loader = lambda: _split(source, val_fraction, subset, seed)  # noqa: E731
    facts = split_memo.recall(memo_key)
    if facts is not None:
        dataset = Dataset(source, facts, loader=loader)
        dataset.forget = lambda: split_memo.forget(memo_key)
        return dataset
    train, val, class_names = loader()
    facts = facts_of(train, val, class_names)
    split_memo.remember(memo_key, facts)
    return Dataset(source, facts, splits=(train, val))


def facts_of(train: Split, val: Split, class_names: list[str]) -> SplitFacts:
    """The facts of a split, from its arrays."""
    shape = tuple(int(n) for n in train.x.shape[1:])
    sizes = (len(train), len(val))
    return SplitFacts(fingerprint_arrays(train, val), shape, str(train.x.dtype), list(class_names), sizes)  # type: ignore[arg-type]


def _split(source: str, val_fraction: float, subset: Optional[int], seed: int) -> tuple[Split, Split, list[str]]:
    pool, _, class_names = _load_source(source)
    x, y = pool.x, pool.y
    if subset is not None and subset < len(y):
        taken, _, _, _ = stratified_split(np.arange(len(y)), y, len(y) - subset, seed, "data.subset")
        x, y = x[taken], y[taken]  # from a memory-mapped cache, reads only these images
    x_train, x_val, y_train, y_val = stratified_split(np.asarray(x), y, val_fraction, seed, "data.val_fraction")
    return Split(x_train, y_train), Split(x_val, y_val), class_names


def load_test(source: str) -> tuple[Split, list[str]]:
    """The test split: only for the final evaluation of the selected model."""
    _, test, class_names = _load_source(source)
    return Split(np.asarray(test.x), test.y), class_names


def is_class(key, class_names: list[str]) -> bool:
    """Whether `key` names a class, by index (an int or digits) or by name."""
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit() and key not in class_names):
        return 0 <= int(key) < len(class_names)
    return key in class_names


def fingerprint_arrays(*splits: Split) -> str:
    """Content hash of images and labels, to tell datasets (and subsets) apart."""
    digest = hashlib.sha256()
    for split in splits:
        digest.update(str(split.x.shape).encode())
        digest.update(np.ascontiguousarray(split.x).tobytes())
        digest.update(np.ascontiguousarray(split.y).astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


def stratified_split(x, y, fraction, seed, key):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
    except ValueError as exc:
        raise HarnessError(f"{key}={fraction}: cannot split {len(y)} images: {exc}") from None


# --------------------------------------------------------------------------- sources


def _load_source(source: str) -> tuple[Split, Split, list[str]]:
    if source == "digits":
        return _digits()
    if source == "cifar10":
        return _cifar10()
    if source.startswith("folder:"):
        from .image_folder import load_folder

        return load_folder(Path(source[len("folder:") :]).expanduser())
    raise HarnessError(f"unknown dataset {source!r}; use digits, cifar10 or folder:DIR")


def _digits() -> tuple[Split, Split, list[str]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    y = bunch.target.astype(np.int64)
    x_pool, x_test, y_pool, y_test = stratified_split(x, y, TEST_FRACTION, TEST_SEED, "digits")
    return Split(x_pool, y_pool), Split(x_test, y_test), [str(i) for i in range(10)]


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()


def _cifar10() -> tuple[Split, Split, list[str]]:
    cache = keras_home() / "datasets"
    archive = cache / "cifar-10-batches-py-target_archive"  # where keras.utils.get_file keeps it
    cached = archive.is_file() or (cache / "cifar-10-batches-py-target").is_dir()
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as exc:  # noqa: BLE001 - any download failure means the same to the user
        state = "is damaged in Keras's cache" if cached else "is not in Keras's cache and the download failed"
        raise HarnessError(
            f"cifar10 {state} ({type(exc).__name__}): copy cifar-10-python.tar.gz (163 MB, the "
            f"CIFAR-10 python version) to {archive}, or use --dataset digits or --dataset folder:DIR"
        ) from None
    pool = Split(x_train, y_train.reshape(-1).astype(np.int64))
    test = Split(x_test, y_test.reshape(-1).astype(np.int64))
    return pool, test, list(CIFAR10_NAMES)


# --------------------------------------------------------------------------- pipeline


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the training images in epoch `epoch` (0-based): a function of the seed
    and the epoch alone, so a run resumed at epoch E sees the batches the uninterrupted run
    would have seen, whichever pipeline feeds them."""
    return np.random.default_rng([seed, epoch]).permutation(size).astype(np.int32)


def training_batches(split: Split, num_classes: int, training, first_epoch: int = 0):
    """(batches, steps per epoch) for epochs first_epoch .. training.epochs-1, each shuffled by
    epoch_order with training.seed. tf.data (index batches gathered from the arrays,
    prefetched) where TensorFlow is installed and training.pipeline is tf_data; else a Keras
    PyDataset over the arrays."""
    batch_size, seed = training.batch_size, training.seed
    steps = max(1, -(-len(split) // batch_size))
    labels = one_hot(split.y, num_classes)
    if training.pipeline == "numpy" or not _have_tensorflow():
        from .batches import EpochBatches

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
