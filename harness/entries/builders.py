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
    """The sha256 (16 hex digits) of the builder's source: for a module of the project, every
    .py file at the project's top level and in the builder's package (what it may import
    from the project: an edited helper changes the hash too); for an installed module, its
    file (its name, for a module without one). Raises HarnessError naming `where` when it
    cannot be found or read."""
    module = builder.partition(":")[0]
    found = find_module(root, module, where)
    project = Path(root).resolve()
    origin = Path(found.origin) if found.origin else None
    if origin is None or not origin.is_file():
        return hashlib.sha256(module.encode()).hexdigest()[:16]
    files = [origin]
    if origin.resolve().is_relative_to(project):
        package = project / module.split(".")[0]
        files = sorted({*project.glob("*.py"), *(package.rglob("*.py") if package.is_dir() else ())})
    digest = hashlib.sha256()
    for path in files:
        try:
            digest.update(str(path.relative_to(project) if path.is_relative_to(project) else path.name).encode())
            digest.update(path.read_bytes())
        except OSError as exc:
            raise HarnessError(f"{where}: model.builder: cannot read {path} ({exc.strerror or exc})") from None
    return digest.hexdigest()[:16]
