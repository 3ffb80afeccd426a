"""Where an entry's `model.builder` lives, found without running it: the module beside the
project's `ablations/` folder (the project root is searched first) or installed, and a hash
of its source, which joins the spec's fingerprint so that a changed builder never reuses an
old run. Importing the module and calling the function is the training core's
(harness/training/builders.py): this layer imports no Keras."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Optional

from harness.errors import HarnessError


def find_module(root: Path, module: str, where: str) -> ModuleSpec:
    """The module's spec, looked for in the project root first (each part of a dotted name
    found on disk, nothing run), then among the installed ones. Raises HarnessError naming
    `where` (the entry file) when there is none."""
    found = _in_project(Path(root), module)
    if found is None:
        try:
            found = importlib.util.find_spec(module)
        except Exception as exc:  # a dotted name whose installed package is missing or raises
            raise HarnessError(f"{where}: model.builder: cannot find module {module!r} ({exc})") from None
    if found is None:
        beside = Path(root) / (module.split(".")[0] + ".py")
        raise HarnessError(f"{where}: model.builder: no module {module!r} ({beside}) and none installed")
    return found


def _in_project(root: Path, module: str) -> Optional[ModuleSpec]:
    search, found = [str(root.resolve())], None
    parts = module.split(".")
    for depth in range(len(parts)):
        found = importlib.machinery.PathFinder.find_spec(".".join(parts[: depth + 1]), search)
        if found is None:
            return None
        search = list(found.submodule_search_locations or [])
    return found


def source_hash(root: Path, builder: str, where: str) -> str:
    """The sha256 (16 hex digits) of the builder module's source file (of its name, for a
    module without one). Raises HarnessError naming `where` when it cannot be found or read."""
    module = builder.partition(":")[0]
    origin = find_module(root, module, where).origin
    if not origin or not Path(origin).is_file():
        return hashlib.sha256(module.encode()).hexdigest()[:16]
    try:
        return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise HarnessError(f"{where}: model.builder: cannot read {origin} ({exc.strerror or exc})") from None
