"""Messages about the schema: one line per validation problem (naming the file that set the
key), did-you-mean hints, and the dotted keys the schema accepts. Imports no TensorFlow."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Optional

from pydantic import BaseModel, ValidationError

from harness.entries.spec import Spec

# Parts of pydantic's error locations that name a union's branch or a dict's key slot, not a
# key of the entry: model.bn_momentum.literal['auto'] is model.bn_momentum to the user.
BRANCH = re.compile(r"^(literal\[.*\]|constrained-\w+|function-\w+\[.*\]|int|str|bool|float|\[key\])$")


def validation_message(
    exc: ValidationError,
    where: Optional[str],
    prefix: str,
    model: type[BaseModel],
    sources: Optional[dict[str, str]] = None,
    fallback: str = "",
) -> str:
    """The first problem of a validation error as one line, naming the file that set the
    key: unknown keys with a hint, a union's branches as one 'expected a or b', a mapping
    key YAML read as true/false named as such."""
    errors = exc.errors()
    error = errors[0]
    raw = [str(part) for part in error.get("loc", ())]
    loc = [part for part in raw if not BRANCH.fullmatch(part)]
    if error["type"] == "invalid_key" or "[key]" in raw:
        loc = loc[:-1]  # the key's position, not a key of the entry
    dotted = ".".join(([prefix] if prefix else []) + loc)
    if where is None:
        where = source_of(sources or {}, dotted, fallback)
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        siblings = _field_names(model, loc[:-1])
        return f"{where}: {dotted}: unknown key{did_you_mean(loc[-1], siblings)}"
    if error["type"] == "missing":
        return f"{where}: {dotted}: required key missing"
    if error["type"] == "invalid_key" or "[key]" in raw:
        return (
            f"{where}: {dotted}: key {show_value(value)} is not a name; quote it "
            "(YAML reads yes, no, on, off, true and false unquoted as booleans)"
        )
    if not loc:  # a check across sections: its message names the key ("model.pretrained: ...")
        said = _expected(error).removeprefix("expected ")
        key, _, rest = said.partition(": ")
        if rest and re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", key):
            return f"{source_of(sources or {}, key, fallback) if where is None else where}: {key}: {rest}"
        return f"{where}: {said}"
    branches = [e for e in errors if [p for p in map(str, e.get("loc", ())) if not BRANCH.fullmatch(p)] == loc]
    wanted = list(dict.fromkeys(_expected(e) for e in branches))
    message = " or ".join([wanted[0], *(w.removeprefix("expected ") for w in wanted[1:])])
    shown = show_value(value)
    return f"{where}: {dotted}: {message}" + ("" if shown in message else f", got {shown}")


def _expected(error: dict) -> str:
    message = error.get("msg", "invalid value")
    return message.replace("Value error, ", "").replace("Input should be", "expected")


def source_of(sources: dict[str, str], dotted: str, fallback: str) -> str:
    """The file (or --set) that set `dotted`, the nearest section above it, or a key below it
    (a mapping written key by key), else `fallback`."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        found = sources.get(".".join(parts[:end]))
        if found is not None:
            return found
    below = [origin for key, origin in sources.items() if key.startswith(f"{dotted}.")]
    return below[-1] if below else fallback


def _field_names(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the model found at `loc` inside `model` (for did-you-mean hints)."""
    current: Any = model
    for part in loc:
        if part.isdigit():
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = _inner_model(fields[part].annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _inner_model(annotation: Any) -> Optional[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def schema_keys(model: type[BaseModel] = Spec, prefix: str = "") -> dict[str, Any]:
    """Every dotted key the schema accepts -> its annotation (list items as `N`)."""
    keys: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        inner = _inner_model(info.annotation)
        keys[dotted] = info.annotation
        if inner is not None:
            item = ".N." if typing.get_origin(info.annotation) is list else "."
            keys.update(schema_keys(inner, f"{dotted}{item}"))
    return keys


def did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def show_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
