"""The leaf of the data wing: what a split is (`Split`, `SplitFacts`), how the fixed test
split is carved off (`TEST_FRACTION`, `TEST_SEED`), the stratified split itself, content
fingerprints, and each epoch's order of the training images. Every other data module
imports this one and it imports none of them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError

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


def facts_of(train: Split, val: Split, class_names: list[str]) -> SplitFacts:
    """The facts of a split, from its arrays."""
    shape = tuple(int(n) for n in train.x.shape[1:])
    sizes = (len(train), len(val))
    return SplitFacts(fingerprint_arrays(train, val), shape, str(train.x.dtype), list(class_names), sizes)  # type: ignore[arg-type]


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


def stratified_split(x, y, fraction, seed, what: str):
    """scikit-learn's stratified train_test_split; `fraction` of the images (a count when
    an int) go to the second part. A split that cannot be made (too few images of a class)
    is one HarnessError that says `what` was being split: "data.val_fraction=0.1"."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
    except ValueError as exc:
        classes = len(set(np.asarray(y).tolist()))
        raise HarnessError(f"{what}: cannot split {len(y)} images of {classes} classes ({exc})") from None


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the training images in epoch `epoch` (0-based): a function of the seed
    and the epoch alone, so a run resumed at epoch E sees the batches the uninterrupted run
    would have seen, whichever pipeline feeds them."""
    return np.random.default_rng([seed, epoch]).permutation(size).astype(np.int32)
