"""Dataset sources and the training pool's split into train and validation.

Sources: `digits` (scikit-learn's bundled 8x8 digits), `cifar10` (Keras's download and
cache) and `folder:DIR` (an image-folder tree, decoded once and cached by content). Every
source yields a fixed test split, set apart before anything else and handed out only by
`load_test`; `load` returns the training pool split into train and validation, its facts
known from the split memo when the same split was made before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np

from harness.data import split_memo
from harness.data.splits import TEST_FRACTION, TEST_SEED, Split, SplitFacts, facts_of, stratified_split
from harness.errors import HarnessError
from harness.paths import keras_home

CIFAR10_NAMES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]  # the report's
CIFAR10_FOLDER_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Dataset:
    """The training pool of one source, split into train and validation. Its facts
    (fingerprint, shape, classes) may come from the split memo; the arrays then load on first
    use of `train` or `val`, and must match the fingerprint."""

    def __init__(
        self,
        source: str,
        facts: SplitFacts,
        *,
        splits: Optional[tuple[Split, Split]] = None,
        loader: Optional[Callable[[], tuple[Split, Split, list[str]]]] = None,
        forget: Callable[[], None] = lambda: None,
    ):
        """splits: the arrays, when already loaded; loader: () -> (train, val, class names),
        called on first use otherwise; forget: drops the memo the facts came from, called
        when the loaded data contradicts them."""
        self.source, self.facts = source, facts
        self._splits, self._loader, self._forget = splits, loader, forget

    @property
    def splits(self) -> tuple[Split, Split]:
        """(train, val), loaded on first use and checked against the facts."""
        return self._loaded()

    @property
    def loaded(self) -> bool:
        """Whether the arrays are in memory (False while only the memo's facts are known)."""
        return self._splits is not None

    def check_data(self) -> None:
        """Load the arrays now (if the facts came from the memo) and check them against it:
        a group checks every seed's data before its run exists."""
        self._loaded()

    def _loaded(self) -> tuple[Split, Split]:
        if self._splits is None:
            train, val, class_names = self._loader()
            if facts_of(train, val, class_names) != self.facts:
                self._forget()
                raise HarnessError(
                    f"{self.source}: the data differs from the split memo's record of it (same listing, other "
                    "content, or a damaged memo); the memo is dropped: run the command again"
                )
            self._splits = (train, val)
        return self._splits

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
    memo_key = split_memo.key(source, val_fraction, subset, seed)
    loader = lambda: _split(source, val_fraction, subset, seed)  # noqa: E731
    facts = split_memo.recall(memo_key)
    if facts is not None:
        return Dataset(source, facts, loader=loader, forget=lambda: split_memo.forget(memo_key))
    train, val, class_names = loader()
    facts = facts_of(train, val, class_names)
    split_memo.remember(memo_key, facts)
    return Dataset(source, facts, splits=(train, val))


def _split(source: str, val_fraction: float, subset: Optional[int], seed: int) -> tuple[Split, Split, list[str]]:
    pool, _, class_names = _load_source(source)
    x, y = pool.x, pool.y
    if subset is not None and subset < len(y):
        taken, _, _, _ = stratified_split(np.arange(len(y)), y, len(y) - subset, seed, f"data.subset={subset}")
        x, y = x[taken], y[taken]  # from a memory-mapped cache, reads only these images
    x_train, x_val, y_train, y_val = stratified_split(
        np.asarray(x), y, val_fraction, seed, f"data.val_fraction={val_fraction}"
    )
    return Split(x_train, y_train), Split(x_val, y_val), class_names


def load_test(source: str) -> tuple[Split, list[str]]:
    """The test split: only for the final evaluation of the selected model."""
    _, test, class_names = _load_source(source)
    return Split(np.asarray(test.x), test.y), class_names


# --------------------------------------------------------------------------- sources


def _load_source(source: str) -> tuple[Split, Split, list[str]]:
    if source == "digits":
        return _digits()
    if source == "cifar10":
        return _cifar10()
    if source.startswith("folder:"):
        from harness.data.image_folder import load_folder

        return load_folder(Path(source[len("folder:") :]).expanduser())
    raise HarnessError(f"unknown dataset {source!r}; use digits, cifar10 or folder:DIR")


def _digits() -> tuple[Split, Split, list[str]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    y = bunch.target.astype(np.int64)
    x_pool, x_test, y_pool, y_test = stratified_split(
        x, y, TEST_FRACTION, TEST_SEED, f"digits: the {TEST_FRACTION:.0%} test split"
    )
    return Split(x_pool, y_pool), Split(x_test, y_test), [str(i) for i in range(10)]


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
