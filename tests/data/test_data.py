"""Data sources and splits: stratified, seeded, subsets, fingerprints, a test split that
run-ablation never sees, image folders decoded once, CIFAR-10 offline."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from harness.data import sources as data
from harness.errors import HarnessError


def test_digits_split_is_stratified_seeded_and_apart_from_test():
    a = data.load("digits", 0.2, None, 0)
    b = data.load("digits", 0.2, None, 0)
    c = data.load("digits", 0.2, None, 1)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert np.array_equal(a.val.y, b.val.y)
    counts = np.bincount(a.val.y, minlength=10)
    assert counts.max() - counts.min() <= 1
    test, names = data.load_test("digits")
    assert names == [str(i) for i in range(10)]
    pool = np.concatenate([a.train.x, a.val.x]).reshape(len(a.train) + len(a.val), -1)
    test_rows = {row.tobytes() for row in test.x.reshape(len(test), -1)}
    assert len(a.train) + len(a.val) + len(test) == 1797
    assert sum(row.tobytes() in test_rows for row in pool) <= 5  # digits has a few duplicate images
    assert a.train.x.min() >= 0.0 and a.train.x.max() <= 1.0
    assert a.input_shape == (8, 8, 1)


def test_subset_is_stratified_and_changes_the_fingerprint():
    full = data.load("digits", 0.25, None, 0)
    small = data.load("digits", 0.25, 200, 0)
    assert len(small.train) + len(small.val) == 200
    assert small.fingerprint != full.fingerprint
    assert set(np.unique(small.val.y)) == set(range(10))


def _image_tree(root, classes=("cat", "dog"), per_class=12, size=6, test=False):
    rng = np.random.default_rng(0)
    for part in ("train", "test") if test else ("train",):
        for name in classes:
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def test_folder_source_decodes_once_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    _image_tree(tmp_path / "imgs", test=True)
    first = data.load(f"folder:{tmp_path / 'imgs'}", 0.25, None, 0)
    assert first.class_names == ["cat", "dog"]
    assert first.input_shape == (6, 6, 3)
    assert len(first.train) + len(first.val) == 24
    cached = list((tmp_path / "cache").glob("folder-*-u8"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob("*.tmp"))
    again = data.load(f"folder:{tmp_path / 'imgs'}", 0.25, None, 0)
    assert again.fingerprint == first.fingerprint
    test, _ = data.load_test(f"folder:{tmp_path / 'imgs'}")
    assert len(test) == 24
    Image.fromarray(np.zeros((6, 6, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "train" / "cat" / "new.png")
    changed = data.load(f"folder:{tmp_path / 'imgs'}", 0.25, None, 0)
    assert changed.fingerprint != first.fingerprint
    assert len(list((tmp_path / "cache").glob("folder-*-u8"))) == 2
    rewritten = tmp_path / "imgs" / "train" / "dog" / "000.png"
    Image.fromarray(np.full((6, 6, 3), 255, dtype=np.uint8)).save(rewritten)  # same name, new pixels
    assert data.load(f"folder:{tmp_path / 'imgs'}", 0.25, None, 0).fingerprint not in (
        first.fingerprint,
        changed.fingerprint,
    )


def test_subset_of_a_folder_equals_the_subset_of_its_decoded_images(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    _image_tree(tmp_path / "imgs", per_class=30)
    source = f"folder:{tmp_path / 'imgs'}"
    small = data.load(source, 0.25, 20, 3)
    full = data.load(source, 0.25, None, 3)
    pool = np.concatenate([full.train.x, full.val.x])
    rows = {
        row.tobytes(): label
        for row, label in zip(pool.reshape(len(pool), -1), np.concatenate([full.train.y, full.val.y]))
    }
    taken = np.concatenate([small.train.x, small.val.x])
    labels = np.concatenate([small.train.y, small.val.y])
    assert len(taken) == 20 and np.bincount(labels).tolist() == [10, 10]
    assert all(rows[row.tobytes()] == label for row, label in zip(taken.reshape(20, -1), labels))
    assert isinstance(small.train.x, np.ndarray) and not isinstance(small.train.x, np.memmap)
    assert data.load(source, 0.25, 20, 3).fingerprint == small.fingerprint != data.load(source, 0.25, 20, 4).fingerprint


def test_folder_without_test_split_carves_one(tmp_path):
    _image_tree(tmp_path / "imgs", per_class=20)
    pool = data.load(f"folder:{tmp_path / 'imgs'}", 0.25, None, 0)
    test, _ = data.load_test(f"folder:{tmp_path / 'imgs'}")
    assert len(pool.train) + len(pool.val) == 32 and len(test) == 8


def test_bad_folders_are_one_line_errors(tmp_path):
    with pytest.raises(HarnessError, match="no train/ folder"):
        data.load(f"folder:{tmp_path / 'missing'}")
    _image_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(HarnessError, match="cannot decode"):
        data.load(f"folder:{tmp_path / 'imgs'}")


def test_cifar10_offline_names_the_file_and_the_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(HarnessError) as caught:
        data.load("cifar10")
    message = str(caught.value)
    assert "cifar-10-python.tar.gz" in message
    assert str(tmp_path / "keras" / "datasets") in message
    assert "--dataset digits" in message and "\n" not in message


def test_a_split_made_before_is_known_without_loading_and_checked_when_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    made = data.load("digits", 0.25, 300, 2)
    memos = list((tmp_path / "cache" / "splits").glob("*.json"))
    assert len(memos) == 1
    known = data.load("digits", 0.25, 300, 2)
    assert not known.loaded  # nothing loaded: the facts came from the memo
    assert (known.fingerprint, known.input_shape, known.input_dtype, known.class_names) == (
        made.fingerprint,
        made.input_shape,
        made.input_dtype,
        made.class_names,
    )
    assert np.array_equal(known.val.x, made.val.x) and np.array_equal(known.train.y, made.train.y)
    assert data.load("digits", 0.25, 300, 3).fingerprint != made.fingerprint  # another seed, another memo
    record = memos[0].read_text()
    for lie in (
        record.replace(made.fingerprint, "0" * 16),
        record.replace('"9"]', '"9", "10", "11"]'),  # more classes than the data has
        record.replace('"float32"', '"uint8"'),
    ):
        memos[0].write_text(lie)
        tampered = data.load("digits", 0.25, 300, 2)
        with pytest.raises(HarnessError, match="differs from the split memo"):
            len(tampered.train)
        assert not memos[0].exists()  # dropped: the next command makes the split again
        assert data.load("digits", 0.25, 300, 2).loaded and memos[0].read_text() == record
    for damaged in ("{not json", record.replace("[8, 8, 1]", "[1e309, 8, 1]"), "[]"):
        memos[0].write_text(damaged)
        again = data.load("digits", 0.25, 300, 2)  # unreadable or absurd: made again
        assert again.loaded and again.fingerprint == made.fingerprint
    memos[0].unlink()
    os.mkfifo(memos[0])  # opening it to read would wait for a writer forever
    assert data.load("digits", 0.25, 300, 2).loaded


def test_a_folder_changed_since_its_split_was_memoised_is_loaded_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    _image_tree(tmp_path / "imgs")
    source = f"folder:{tmp_path / 'imgs'}"
    first = data.load(source, 0.25, None, 0)
    (tmp_path / "imgs" / "train" / "dog").rename(tmp_path / "imgs" / "train" / "wolf")
    renamed = data.load(source, 0.25, None, 0)
    assert renamed.class_names == ["cat", "wolf"] and renamed.loaded
    (tmp_path / "imgs" / "train" / "cat" / "000.png").unlink()
    fewer = data.load(source, 0.25, None, 0)
    assert fewer.fingerprint != first.fingerprint and sum(fewer.facts.sizes) < sum(first.facts.sizes)
    (tmp_path / "imgs" / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(HarnessError, match="cannot decode"):
        data.load(source, 0.25, None, 0)
