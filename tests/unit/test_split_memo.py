"""The split memo on its own: a record written whole, read back, ignored when absurd or
damaged, dropped on request; keys that change with what would change the split."""

from __future__ import annotations

import json

import pytest

from harness.data import split_memo
from harness.data.splits import SplitFacts

FACTS = SplitFacts("ab" * 8, (8, 8, 1), "float32", [str(i) for i in range(10)], (1213, 135))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    return tmp_path / "splits"


def test_a_record_reads_back_as_written_and_can_be_dropped(cache):
    key = split_memo.key("digits", 0.1, None, 0)
    assert split_memo.recall(key) is None
    split_memo.remember(key, FACTS)
    assert split_memo.recall(key) == FACTS
    assert [p.suffix for p in cache.iterdir()] == [".json"]  # no temporary file left behind
    split_memo.forget(key)
    assert split_memo.recall(key) is None


def test_keys_change_with_anything_that_changes_the_split():
    keys = {
        split_memo.key("digits", 0.1, None, 0),
        split_memo.key("digits", 0.2, None, 0),
        split_memo.key("digits", 0.1, 300, 0),
        split_memo.key("digits", 0.1, None, 1),
    }
    assert len(keys) == 4
    assert split_memo.key("cifar10", 0.1, None, 0) is None  # not memoised: always loaded


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        "[]",
        json.dumps({"fingerprint": "x"}),
        json.dumps(
            {
                **json.loads('{"a": 1}'),
                "fingerprint": "x",
                "input_shape": [1e309, 8, 1],
                "input_dtype": "f",
                "class_names": ["a", "b"],
                "sizes": [1, 1],
            }
        ),  # fmt: skip
        json.dumps(
            {"fingerprint": "x", "input_shape": [8, 8, 1], "input_dtype": "f", "class_names": ["a"], "sizes": [1, 1]}
        ),  # fmt: skip
        json.dumps(
            {
                "fingerprint": "x",
                "input_shape": [8, 8, 1],
                "input_dtype": "f",
                "class_names": ["a", "b"],
                "sizes": [0, 1],
            }
        ),  # fmt: skip
    ],
)
def test_a_damaged_or_absurd_record_is_ignored(cache, damage):
    key = split_memo.key("digits", 0.1, None, 0)
    split_memo.remember(key, FACTS)
    next(cache.iterdir()).write_text(damage)
    assert split_memo.recall(key) is None


def test_a_read_only_cache_is_no_error_and_a_file_in_its_place_is_one_line(tmp_path, monkeypatch):
    import os

    import pytest

    from harness.errors import HarnessError

    (tmp_path / "cache").mkdir()
    os.chmod(tmp_path / "cache", 0o500)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    key = split_memo.key("digits", 0.1, None, 0)
    split_memo.remember(key, FACTS)  # nothing kept, nothing raised: the split is made again
    if os.geteuid() != 0:  # root writes anyway
        assert split_memo.recall(key) is None
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "file"))
    with pytest.raises(HarnessError, match=r"^HARNESS_CACHE=.*file: not a folder"):
        split_memo.recall(key)
