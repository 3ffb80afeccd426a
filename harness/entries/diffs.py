"""What an entry changes against its parent: the dotted keys whose values differ, in words.
Imports no TensorFlow."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from harness.entries.registry import Registry, Resolved, flatten
from harness.entries.spec import Spec


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Diff:
    name: str
    parent: Optional[str]
    changes: list[Change] = field(default_factory=list)

    def in_words(self) -> str:
        """The diff as one short phrase, e.g. 'optimizer.name sgd -> adam'."""
        if not self.changes:
            return "no change" if self.parent else "the starting point"
        return "; ".join(f"{c.key} {_word(c.old)} -> {_word(c.new)}" for c in self.changes)


ABSENT = object()  # a key one side of a diff does not have


def shown(value: Any) -> str:
    """A spec value as `harness show` prints it: null, (none) for a key a side lacks, else str."""
    if value is ABSENT:
        return "(none)"
    return "null" if value is None else str(value)


def _word(value: Any) -> str:
    if value is ABSENT:
        return "(none)"
    return json.dumps(value) if not isinstance(value, str) else value


def diff_specs(old: Spec, new: Spec) -> list[Change]:
    """The dotted keys whose values differ between two specs."""
    a, b = flatten(old.model_dump(mode="json")), flatten(new.model_dump(mode="json"))
    changes = []
    for key in sorted(set(a) | set(b), key=lambda k: (k.split(".")[0], k)):
        va, vb = a.get(key, ABSENT), b.get(key, ABSENT)
        if va == vb or _expanded(key, va, vb, a, b) or (_blank(va) and _blank(vb)):
            continue  # a null that appears with its section (a new list item) changes nothing
        changes.append(Change(key, va, vb))
    return changes


def _blank(value: Any) -> bool:
    return value is ABSENT or value is None


def _expanded(key: str, va: Any, vb: Any, a: dict, b: dict) -> bool:
    """A feature switched on or off (null or [] <-> keys below it) shows as the keys below."""
    below = f"{key}."
    if vb is ABSENT and va in (None, []):
        return any(k.startswith(below) for k in b)
    if va is ABSENT and vb in (None, []):
        return any(k.startswith(below) for k in a)
    return False


def diff_against_parent(registry: Registry, resolved: Resolved) -> Diff:
    """What `resolved` changes against its parent (or the schema defaults, for a root)."""
    if resolved.parent is None:
        base = Spec()
    else:
        base = registry.resolve(resolved.parent).spec
    return Diff(resolved.name, resolved.parent, diff_specs(base, resolved.spec))
