"""An entry's `search` block: dotted spec keys -> distributions, checked against the schema.

    search:
      optimizer.learning_rate: {float: [1.0e-4, 1.0e-2], log: true}
      model.dense.0.units: {int: [32, 256], step: 32}
      training.batch_size: {categorical: [64, 128, 256]}

Every key must name a spec value that exists in the resolved entry; every bound and choice
must be a valid value for that key (checked by validating the spec with it). The registry
checks each entry's block as written, so `show` and `run-ablation` refuse a malformed one
as `tune` does. Imports no Optuna.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

from harness.entries.schema_help import schema_keys
from harness.errors import HarnessError

Number = Union[int, float]


@dataclass(frozen=True)
class Dimension:
    """One searched key: kind is float, int or categorical."""

    key: str
    kind: str
    low: Optional[Number] = None
    high: Optional[Number] = None
    log: bool = False
    step: Optional[Number] = None
    choices: tuple = ()

    def values_to_check(self) -> list[Any]:
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def dimensions_of(
    search: dict, flat: dict[str, Any], where: str, check_value: Callable[[str, Any], None]
) -> list[Dimension]:
    """`search` (an entry's block, from the file `where`) as dimensions, every one checked:
    keys against `flat` (the resolved spec as dotted keys), values by `check_value(key,
    value)`, which raises HarnessError for a value the schema refuses. Raises HarnessError."""
    dimensions = []
    for key, raw in search.items():
        label = f"{where}: search.{key}"
        if not isinstance(key, str) or key not in flat:
            raise HarnessError(f"{label}: unknown key{_hint(str(key), flat)}")
        dimension = _dimension(key, raw, label)
        for value in dimension.values_to_check():
            try:
                check_value(key, value)
            except HarnessError as exc:
                detail = str(exc).split(": ", 2)[-1]
                raise HarnessError(f"{label}: {value!r} is not a valid value ({detail})") from None
        if dimension.kind == "float" and dimension.step is None:
            inside = dimension.low + (dimension.high - dimension.low) * 0.382  # a fraction the sampler will draw
            try:
                check_value(key, inside)
            except HarnessError:
                raise HarnessError(f"{label}: {key} takes whole numbers; use int: [low, high]") from None
        if dimension.kind in ("float", "int") and isinstance(flat[key], bool):
            raise HarnessError(f"{label}: {key} is true/false; use categorical: [true, false]")
        if dimension.kind == "int" and isinstance(flat[key], float):
            raise HarnessError(f"{label}: {key} is a float; use float: [low, high]")
        dimensions.append(dimension)
    return dimensions


def _dimension(key: str, raw: Any, label: str) -> Dimension:
    if not isinstance(raw, dict):
        raise HarnessError(f"{label}: expected a mapping like {{float: [low, high]}}, got {raw!r}")
    kinds = [k for k in ("float", "int", "categorical") if k in raw]
    extra = set(raw) - {"float", "int", "categorical", "log", "step"}
    if len(kinds) != 1 or extra:
        bad = sorted(map(str, extra)) or kinds or list(map(str, raw))
        raise HarnessError(f"{label}: expected exactly one of float, int, categorical (plus log, step), got {bad}")
    kind = kinds[0]
    if kind == "categorical":
        choices = raw["categorical"]
        if not isinstance(choices, list) or not choices:
            raise HarnessError(f"{label}: categorical needs a non-empty list of choices")
        if "log" in raw or "step" in raw:
            raise HarnessError(f"{label}: log and step apply to float and int only")
        if any(isinstance(choice, (list, dict)) for choice in choices):
            raise HarnessError(
                f"{label}: categorical choices must be single values (Optuna stores no lists or mappings)"
            )
        return Dimension(key, kind, choices=tuple(choices))
    bounds = raw[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise HarnessError(f"{label}: {kind} needs [low, high], got {bounds!r}")
    number = int if kind == "int" else (int, float)
    if any(isinstance(b, bool) or not isinstance(b, number) for b in bounds):
        raise HarnessError(
            f"{label}: {kind} bounds must be {'integers' if kind == 'int' else 'numbers'}, got {bounds!r}"
        )
    low, high = bounds
    if not low < high:
        raise HarnessError(f"{label}: empty or inverted range [{low}, {high}]")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise HarnessError(f"{label}: log must be true or false")
    if log and low <= 0:
        raise HarnessError(f"{label}: a log range needs low > 0, got {low}")
    step = raw.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, number) or not math.isfinite(step) or step <= 0:
            raise HarnessError(f"{label}: step must be a positive {'integer' if kind == 'int' else 'number'}")
        if log:
            raise HarnessError(f"{label}: step and log cannot be combined")
        if step > high - low:
            raise HarnessError(f"{label}: step {step} is wider than the range [{low}, {high}]")
    return Dimension(key, kind, low=low, high=high, log=log, step=step)


def _hint(key: str, flat: dict[str, Any]) -> str:
    generic = re.sub(r"\.\d+\.", ".N.", key)
    if generic in schema_keys() or key in schema_keys():
        return " (not set in this entry: a list item that does not exist, or a switched-off section)"
    close = difflib.get_close_matches(key, list(flat), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
