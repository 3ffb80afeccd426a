"""Leave-one-out ablation: for each step of NAME's chain, NAME with that one step's changes
reverted to its parent's values; run each and compare against NAME.

A step whose keys a later step overwrote no longer shows in NAME: it is reported as
overwritten (by which step), not run. A step only partly overwritten reverts the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness.entries.diffs import ABSENT, diff_against_parent
from harness.entries.registry import Registry


@dataclass
class Variant:
    step: str
    reverted: list[str] = field(default_factory=list)  # keys put back to the parent's values
    overwritten_by: dict[str, str] = field(default_factory=dict)  # key -> later step
    overrides: list[str] = field(default_factory=list)  # --set section=... giving the variant

    @property
    def runnable(self) -> bool:
        return bool(self.reverted)

    def describe(self) -> str:
        if not self.reverted:
            later = sorted(set(self.overwritten_by.values()))
            return f"overwritten by {', '.join(later)}: not run"
        note = (
            f"; {len(self.overwritten_by)} key(s) overwritten by {', '.join(sorted(set(self.overwritten_by.values())))}"
            if self.overwritten_by
            else ""
        )
        return f"reverts {', '.join(self.reverted)}{note}"


def variant_title(target: str, step: str) -> str:
    """A variant as one reads it: 'final without adam'; 'final without its own step' for the
    variant that reverts the target's own changes."""
    return f"{target} without its own step" if step == target else f"{target} without {step}"


def leave_one_out(registry: Registry, name: str, overrides: list[str]) -> list[Variant]:
    """One variant per step of the chain (the root compared with defaults is skipped)."""
    target = registry.resolve(name, overrides)
    target_flat = target.flat()
    target_tree = target.spec.model_dump(mode="json")
    chain = list(target.chain)
    variants = []
    for position, step in enumerate(chain[1:], start=1):
        resolved_step = registry.resolve(step)
        changes = diff_against_parent(registry, resolved_step).changes
        parent_flat = registry.resolve(chain[position - 1]).flat()
        variant = Variant(step)
        flat = dict(target_flat)
        for change in changes:
            if target_flat.get(change.key, ABSENT) != change.new:
                variant.overwritten_by[change.key] = _who_set(registry, chain[position + 1 :], change.key)
                continue
            variant.reverted.append(change.key)
            _revert(flat, change.key, parent_flat)
        if variant.reverted:
            tree = _unflatten(flat)
            variant.overrides = [
                f"{section}.{key}={json.dumps(value)}"
                for section in tree
                for key, value in tree[section].items()
                if value != target_tree[section].get(key)
            ]
        variants.append(variant)
    return variants


def _who_set(registry: Registry, later: list[str], key: str) -> str:
    for step in later:
        for change in diff_against_parent(registry, registry.resolve(step)).changes:
            if change.key == key or key.startswith(change.key + ".") or change.key.startswith(key + "."):
                return step
    return later[-1] if later else "?"


def _revert(flat: dict[str, Any], key: str, parent_flat: dict[str, Any]) -> None:
    """Put `key` back to the parent's value. A key the parent lacks goes with the whole
    subtree the parent lacks (a list item, a switched-on section), and the container is set
    back to the parent's leaf (e.g. training.early_stopping: null); a section the step
    switched off (a leaf here, a subtree in the parent) gets the parent's subtree back."""
    if key in parent_flat:
        _put(flat, key, parent_flat[key])
        return
    parts = key.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix not in parent_flat and not any(k.startswith(prefix + ".") for k in parent_flat):
            break
    else:  # the parent has a subtree under `key`
        _drop(flat, key)
        for parent_key, value in parent_flat.items():
            if parent_key.startswith(key + "."):
                _put(flat, parent_key, value)
        return
    _drop(flat, prefix)
    container = ".".join(parts[: end - 1])
    if container in parent_flat:
        _put(flat, container, parent_flat[container])


def _put(flat: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` in place of its subtree and of any leaf above it (a section that was null)."""
    parts = key.split(".")
    for end in range(1, len(parts)):
        flat.pop(".".join(parts[:end]), None)
    _drop(flat, key)
    flat[key] = value


def _drop(flat: dict[str, Any], prefix: str) -> None:
    for key in [k for k in flat if k == prefix or k.startswith(prefix + ".")]:
        del flat[key]


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(tree)


def _lists(node: Any) -> Any:
    """Dicts keyed 0..n-1 back to lists (flatten writes list items by index)."""
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(isinstance(k, str) and k.isdigit() for k in converted):
        indices = sorted(int(k) for k in converted)
        if indices == list(range(len(indices))):
            return [converted[str(i)] for i in indices]
    return converted
