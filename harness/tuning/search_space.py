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
    on top (a builder's param against its signature too). Raises HarnessError."""

    def check_value(key: str, value: Any) -> None:
        candidate = registry.resolve(resolved.name, [*resolved.overrides, f"{key}={yaml_scalar(value)}"])
        if key.startswith("model.params.") and candidate.spec.model.builder is not None:
            from harness.training import builders  # the value against the builder's signature

            builders.check(candidate.spec.model, registry.root, candidate.source_of)

    where = registry.rel(resolved.entry.path)
    return dimensions_of(resolved.entry.search, resolved.flat(), where, check_value)


def current_values(resolved: Resolved, dimensions: list[Dimension]) -> dict[str, Any]:
    """The entry's own value of every searched key its distribution holds: the study's first
    trial (a key whose own value the search leaves out is the sampler's from the start)."""
    flat = flatten(resolved.spec.model_dump(mode="json"))
    return {d.key: flat[d.key] for d in dimensions if _holds(d, flat[d.key])}


def _holds(dimension: Dimension, value: Any) -> bool:
    if dimension.kind == "categorical":
        return any(value == choice and type(value) is type(choice) for choice in dimension.choices)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and dimension.low <= value <= dimension.high
