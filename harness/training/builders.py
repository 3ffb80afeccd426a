"""A model of the user's own, by import path: `model.builder: "module:function"` is called
as `function(input_shape=..., num_classes=..., **model.params)` and must return an
uncompiled keras.Model whose output is one probability per class. Its params are checked
against the function's signature (unknown, missing, a wrong type where annotated) before
anything trains; each problem is one HarnessError naming the entry file and key. Where the
module is, and its source hash, is the entries' (harness/entries/builders.py)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from harness.entries.builders import find_module
from harness.entries.spec import ModelSpec
from harness.errors import HarnessError
from harness.training.quiet import load_keras

GIVEN = ("input_shape", "num_classes")  # what the harness passes; the rest comes from model.params
CHECKED_TYPES = {  # annotations a param is checked against
    int: "an integer",
    float: "a number",
    str: "text",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}

PROJECT_MODULES: set[str] = set()  # names this process loaded from a project (not installed ones)
WhereOf = Callable[[str], str]  # dotted key -> the entry file (or --set) that set it


def load(root: Path, builder: str, where: str) -> Callable[..., Any]:
    """The builder function. A module of the project is run afresh each time (an edited
    builder is the one used); an installed one is imported as usual."""
    load_keras()  # before the user's module imports it: TensorFlow's start-up lines stay unseen
    module_name, _, function_name = builder.partition(":")
    found = find_module(root, module_name, where)
    project = Path(root).resolve()
    in_project = bool(found.origin) and Path(found.origin).resolve().is_relative_to(project)
    top = module_name.split(".")[0]
    if in_project and _taken(top, project):
        raise HarnessError(
            f"{where}: model.builder: the project's {top} would shadow the installed module {top!r}; rename it"
        )
    try:
        if in_project and "." not in module_name:
            module = importlib.util.module_from_spec(found)
            sys.modules[module_name] = module  # so a saved model's classes resolve to it
            PROJECT_MODULES.add(module_name)
            found.loader.exec_module(module)
        else:
            if str(project) not in sys.path:
                sys.path.insert(0, str(project))
            module = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a module that exits or raises anything is an error, not our exit
        sys.modules.pop(module_name, None)
        raise HarnessError(f"{where}: model.builder: importing {module_name} raised {_said(exc)}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise HarnessError(f"{where}: model.builder: module {module_name} has no function {function_name!r}")
    return function


def check(model: ModelSpec, root: Path, where_of: WhereOf) -> Callable[..., Any]:
    """Load the builder and check `model.params` against its signature; the function."""
    where = where_of("model.builder")
    function = load(root, model.builder, where)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return function  # a callable without a signature: what it takes is its own to say
    parameters = signature.parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    named = {n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for given in GIVEN:
        if given not in named and not open_ended:
            raise HarnessError(
                f"{where}: model.builder: {model.builder} takes no {given} (it must take {', '.join(GIVEN)})"
            )
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # one annotation that does not resolve: the others still count
        hints = {n: p.annotation for n, p in parameters.items() if isinstance(p.annotation, type)}
    for key, value in model.params.items():
        here = f"{where_of(f'model.params.{key}')}: model.params.{key}"
        if key in GIVEN:
            raise HarnessError(f"{here}: the harness passes {key} itself")
        if key not in named and not open_ended:
            takes = ", ".join(n for n in named if n not in GIVEN) or "nothing else"
            raise HarnessError(f"{here}: {model.builder} takes no parameter {key!r} (it takes: {takes})")
        expected = hints.get(key)
        if expected in CHECKED_TYPES and not _is(value, expected):
            raise HarnessError(
                f"{here}: expected {CHECKED_TYPES[expected]} ({key}: {expected.__name__}), got {value!r}"
            )
    for name, parameter in parameters.items():
        required = parameter.default is inspect.Parameter.empty and parameter.kind in (
            parameter.POSITIONAL_OR_KEYWORD,
            parameter.KEYWORD_ONLY,
        )
        if required and name not in GIVEN and name not in model.params:
            raise HarnessError(f"{where}: model.params.{name}: missing ({model.builder} requires it)")
    return function


def build(
    model: ModelSpec,
    input_shape: tuple[int, ...],
    num_classes: int,
    root: Path,
    where_of: Optional[WhereOf] = None,
):
    """The builder's keras.Model for these images, checked: a Keras model whose output has
    one value per class. Raises HarnessError naming the entry file."""
    load_keras()
    import keras

    where_of = where_of or (lambda key: "model")
    function = check(model, root, where_of)
    where = where_of("model.builder")
    try:
        built = function(input_shape=tuple(input_shape), num_classes=num_classes, **model.params)
    except (HarnessError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # a builder that exits or raises anything is an error, not our exit
        raise HarnessError(f"{where}: model.builder: {model.builder} raised {_said(exc)}") from None
    if not isinstance(built, keras.Model):
        raise HarnessError(
            f"{where}: model.builder: {model.builder} returned {type(built).__name__}, not a keras.Model"
        )
    try:  # applied to the images as they come (a subclassed or input-less model has no output_shape)
        probe = built(keras.Input(shape=tuple(input_shape)))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        detail = _said(exc)
        raise HarnessError(
            f"{where}: model.builder: {model.builder}'s model fails on {input_shape} images: {detail}"
        ) from None
    shape = tuple(probe.shape) if hasattr(probe, "shape") else type(probe).__name__
    if not (isinstance(shape, tuple) and len(shape) == 2 and shape[-1] == num_classes):
        raise HarnessError(
            f"{where}: model.builder: {model.builder}'s output has shape {shape}; "
            f"expected (None, {num_classes}) for the {num_classes} classes"
        )
    return built


def _taken(top: str, project: Path) -> bool:
    """Whether an installed or standard module already has this name (outside the project)."""
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return True
    loaded = sys.modules.get(top)
    if loaded is not None and top not in PROJECT_MODULES:
        origin = getattr(loaded, "__file__", None)
        return not (origin and Path(origin).resolve().is_relative_to(project))
    elsewhere = [p for p in sys.path if p and Path(p).resolve() != project]
    return importlib.machinery.PathFinder.find_spec(top, elsewhere) is not None


def _is(value: Any, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def _said(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
