"""`--set key=value` overrides: the same dotted keys as the entries (list items by index),
parsed as YAML values and applied on top of the merged chain; they are part of the spec,
logged and fingerprinted. Also the overrides a command line's options stand for."""

from __future__ import annotations

import re
from typing import Any, Optional

from harness.entries.schema_help import did_you_mean, show_value
from harness.entries.spec import SECTIONS
from harness.entries.yamlio import parse_yaml, yaml_scalar
from harness.errors import HarnessError

OVERRIDE = "--set"  # where an overridden value came from, as `harness show` prints it
MAX_OVERRIDE = 10_000  # characters in one --set: a value, not a file


def command_overrides(
    sets: Optional[list[str]], dataset: Optional[str] = None, epochs: Optional[int] = None
) -> list[str]:
    """The overrides of a command line: --dataset and --epochs first (as data.source and
    training.epochs), then every --set. The dataset is taken literally: `folder:/x/a #2` is
    a path, not YAML with a comment."""
    overrides = list(sets or [])
    if dataset is not None:
        overrides.insert(0, f"data.source={yaml_scalar(dataset)}")
    if epochs is not None:
        overrides.insert(0, f"training.epochs={epochs}")
    return overrides


def parse_override(text: str) -> tuple[str, Any]:
    """`key.path=value` -> (key.path, YAML-parsed value); anything else is a HarnessError."""
    if not isinstance(text, str) or "=" not in text:
        raise HarnessError(f"bad --set {show_value(text)}: expected key=value, e.g. training.epochs=5")
    if len(text) > MAX_OVERRIDE:
        raise HarnessError(f"bad --set {show_value(text)}: longer than {MAX_OVERRIDE:,} characters")
    key, _, value_text = text.partition("=")
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+", key):
        raise HarnessError(f"bad --set {text!r}: key must be dotted, e.g. optimizer.name=adam")
    if key.split(".")[0] not in SECTIONS:
        hint = did_you_mean(key.split(".")[0], list(SECTIONS))
        raise HarnessError(f"bad --set {text!r}: unknown section {key.split('.')[0]!r}{hint}")
    value = parse_yaml(value_text, f"--set {key}") if value_text.strip() else None
    return key, value


def apply_override(merged: dict, key: str, value: Any, sources: dict[str, str]) -> None:
    parts = key.split(".")
    node: Any = merged
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise HarnessError(f"--set {key}: no item {part} in {'.'.join(parts[:depth])}")
            node = node[int(part)]
            continue
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise HarnessError(f"--set {key}: {'.'.join(parts[: depth + 1])} is not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise HarnessError(f"--set {key}: no item {last} in {'.'.join(parts[:-1])}")
        node[int(last)] = value
    else:
        node[last] = value
    forget_below(sources, key)
    sources[key] = OVERRIDE


def forget_below(sources: dict[str, str], dotted: str) -> None:
    for stale in [k for k in sources if k.startswith(f"{dotted}.")]:
        del sources[stale]
