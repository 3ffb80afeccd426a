"""`harness list`: the entries as a numbered history, one line each, fitted to the terminal.
The number is an entry's position in its history (its step: 01 baseline .. 15 final); an
entry with one child continues the column, several children (a branch point) are indented
under it, the longest line of descent continuing the column."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Optional

from harness.entries.registry import Registry


def lineage_lines(
    registry: Registry, width: Optional[int] = None, warn: Optional[Callable[[str], None]] = None
) -> list[str]:
    """One line per readable entry: indent, step number, name, first sentence of its description."""
    width = width or shutil.get_terminal_size((80, 24)).columns
    tree = registry.children(warn=warn)
    depth: dict[str, int] = {}

    def measure(name: str) -> int:
        depth[name] = 1 + max((measure(child) for child in tree.get(name, [])), default=0)
        return depth[name]

    for root in tree.get(None, []):
        measure(root)
    rows: list[tuple[int, int, str]] = []  # (indent level, step, name)

    def walk(name: str, level: int, step: int) -> None:
        rows.append((level, step, name))
        children = tree.get(name, [])
        deepest = max((depth[c] for c in children), default=0)
        main = [c for c in children if depth[c] == deepest]
        continuing = main[0] if len(main) == 1 and len(children) > 0 and deepest > 1 else None
        for child in children:
            if child != continuing:
                walk(child, level + 1, step + 1)
        if continuing:
            walk(continuing, level, step + 1)

    for root in tree.get(None, []):
        walk(root, 0, 1)
    name_width = max((2 * level + len(name) for level, _, name in rows), default=0)
    lines = []
    for level, step, name in rows:
        head = f"{'  ' * level}{step:>2} {name}".ljust(name_width + 4)
        room = width - len(head) - 1
        text = first_sentence(registry.entry(name).description, max(room, 0))
        lines.append(f"{head} {text}".rstrip() if room > 10 else head.rstrip())
    return lines


def first_sentence(text: str, limit: int) -> str:
    """An entry's description cut to its first sentence and to `limit` characters."""
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: max(limit - 3, 0)].rstrip() + "..."
