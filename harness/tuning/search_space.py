"""The searched dimensions of an entry as resolved for a study (its overrides included).
The block's format and checks are the entries' (harness/entries/search.py)."""

from __future__ import annotations

from typing import Any

from harness.entries.registry import Registry, Resolved, flatten
from harness.entries.search import Dimension, dimensions_of
from harness.entries.yamlio import yaml_scalar

__all__ = ["Dimension", "current_values", "parse_search"]


def parse_search(resolved: Resolved, registry: Registry) -> list[Dimension]:
    """The entry's search block as dimensions, each value checked with the study's overrides
    on top. Raises HarnessError."""

    def check_value(key: str, value: Any) -> None:
        registry.resolve(resolved.name, [*resolved.overrides, f"{key}={yaml_scalar(value)}"])

    where = registry.rel(resolved.entry.path)
    return dimensions_of(resolved.entry.search, resolved.flat(), where, check_value)


def current_values(resolved: Resolved, dimensions: list[Dimension]) -> dict[str, Any]:
    """The entry's own value of every searched key: the study's first trial."""
    flat = flatten(resolved.spec.model_dump(mode="json"))
    return {d.key: flat[d.key] for d in dimensions}
