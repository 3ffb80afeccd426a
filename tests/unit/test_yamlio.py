"""YAML read safely: 1e-4 is a float, duplicate keys and alias bombs are one-line errors, and
a value written back with yaml_scalar reads as the same value."""

from __future__ import annotations

import pytest

from harness.entries.yamlio import MAX_VALUES, expanded_size, parse_yaml, yaml_scalar
from harness.errors import HarnessError


def test_exponents_without_a_dot_are_floats():
    assert parse_yaml("a: 1e-4\nb: 2.5E3\nc: '1e-4'\nd: 10", "x") == {"a": 1e-4, "b": 2500.0, "c": "1e-4", "d": 10}


def test_duplicate_keys_name_the_line():
    with pytest.raises(HarnessError, match=r"x: malformed YAML at line 2: duplicate key 'a' \(line 2\)"):
        parse_yaml("a: 1\na: 2\n", "x")


def test_aliases_are_measured_without_being_expanded():
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    with pytest.raises(HarnessError, match="aliases expand to more than"):
        parse_yaml("\n".join(bomb), "x")
    shared = [1, 2, 3]
    assert expanded_size({"a": shared, "b": shared}) == 1 + 2 + 2 * 4
    loop: list = []
    loop.append(loop)
    assert expanded_size(loop) > MAX_VALUES


@pytest.mark.parametrize("value", ["yes", "1e-4", "a #b", "", "null", 3, 0.5, True, None, [1, "x"], {"k": "v"}])
def test_a_scalar_written_back_reads_as_itself(value):
    assert parse_yaml(yaml_scalar(value), "x") == value
