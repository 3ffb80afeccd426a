"""`--set key=value`: dotted keys into sections and list items, values parsed as YAML, every
mistake one HarnessError naming the override."""

from __future__ import annotations

import pytest

from harness.entries.overrides import OVERRIDE, apply_override, command_overrides, parse_override
from harness.errors import HarnessError


def test_values_are_yaml_and_keys_are_dotted():
    assert parse_override("optimizer.learning_rate=1e-4") == ("optimizer.learning_rate", 1e-4)
    assert parse_override("training.early_stopping=") == ("training.early_stopping", None)
    assert parse_override("model.blocks.0.filters=16") == ("model.blocks.0.filters", 16)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("epochs=3", "key must be dotted"),
        ("training.epochs", "expected key=value"),
        ("trainig.epochs=3", "did you mean 'training'"),
        ("training.epochs=[1, 2", "malformed YAML"),
        ("x" * 20_000 + "=1", "longer than"),
    ],
)
def test_bad_overrides_are_one_line(text, fragment):
    with pytest.raises(HarnessError, match=None) as caught:
        parse_override(text)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_applying_walks_mappings_and_list_items_and_records_the_source():
    merged = {"model": {"blocks": [{"filters": 4}]}}
    sources = {"model.blocks": "ablations/a.yaml"}
    apply_override(merged, "model.blocks.0.filters", 8, sources)
    apply_override(merged, "training.epochs", 2, sources)
    assert merged == {"model": {"blocks": [{"filters": 8}]}, "training": {"epochs": 2}}
    assert sources["model.blocks.0.filters"] == OVERRIDE == sources["training.epochs"]
    with pytest.raises(HarnessError, match="no item 3"):
        apply_override(merged, "model.blocks.3.filters", 8, sources)
    with pytest.raises(HarnessError, match="is not a mapping"):
        apply_override(merged, "training.epochs.x", 8, sources)


def test_the_command_line_options_become_overrides_taken_literally():
    made = command_overrides(["loss.gamma=1"], dataset="folder:/x/a #2", epochs=3)
    assert made == ["training.epochs=3", 'data.source="folder:/x/a #2"', "loss.gamma=1"]
    assert parse_override(made[1]) == ("data.source", "folder:/x/a #2")
