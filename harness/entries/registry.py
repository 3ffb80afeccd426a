"""Ablation entries: loading, `extends` resolution, overrides, provenance and fingerprint.

An entry is `ablations/NAME.yaml`. Meta keys (extends, description, report, search) belong
to the entry alone; config sections merge down the `extends` chain: mappings key by key,
scalars and lists replace, `null` switches a feature off. The result is validated against
the strict schema in `spec.py`. Imports no TensorFlow, so `list` and `show` stay fast.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import ValidationError

from harness.entries.builders import source_hash
from harness.entries.overrides import apply_override, forget_below, parse_override
from harness.entries.schema_help import did_you_mean, show_value, source_of, validation_message
from harness.entries.search import dimensions_of
from harness.entries.spec import META_KEYS, SECTIONS, ReportClaims, Spec
from harness.entries.yamlio import load_yaml_file
from harness.errors import HarnessError

NAME_PATTERN = re.compile(r"[a-z0-9_]{1,64}")  # fullmatch only: a file name, never a path
DEFAULT = "default"


@dataclass(frozen=True)
class Entry:
    """One YAML file as written: its meta keys and the config sections it sets."""

    name: str
    path: Path
    parent: Optional[str]
    description: str
    report: ReportClaims
    search: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class Resolved:
    """An entry with its chain merged, overrides applied and the result validated."""

    entry: Entry
    chain: tuple[str, ...]  # root first, the entry last
    spec: Spec
    sources: dict[str, str]  # dotted key as written -> file (or --set) that set it
    overrides: tuple[str, ...] = ()
    builder_source: Optional[str] = None  # hash of model.builder's module source, if any

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def parent(self) -> Optional[str]:
        return self.entry.parent

    def flat(self) -> dict[str, Any]:
        """The resolved spec as dotted keys (lists indexed), as logged to MLflow."""
        return flatten(self.spec.model_dump(mode="json"))

    def source_of(self, dotted: str) -> str:
        """The file (or --set, or default) that gave this dotted key its value."""
        return source_of(self.sources, dotted, DEFAULT)

    def fingerprint(self) -> str:
        """Hash of the resolved spec: equal fingerprints mean the same experiment."""
        return spec_fingerprint(self.spec, self.builder_source)


NOT_FINGERPRINTED = ("system_metrics",)  # training keys that record a run without changing it


def spec_fingerprint(spec: Spec, builder_source: Optional[str] = None) -> str:
    """Hash of what determines a run: the resolved spec less what only records it, and the
    source of a model.builder's module. The built-in models' hashes are those from before
    builders (their unset builder keys are left out)."""
    tree = spec.model_dump(mode="json")
    for key in NOT_FINGERPRINTED:
        tree["training"].pop(key, None)
    if spec.model.builder is None:
        tree["model"].pop("builder", None)
        tree["model"].pop("params", None)
    else:
        tree["model"]["builder_source"] = builder_source
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists -> {dotted.key: leaf}; empty containers stay as leaves."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, list) and tree:
        out = {}
        for index, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}{index}."))
        return out
    return {prefix[:-1]: tree}


def find_root(start: Optional[Path] = None) -> Path:
    """The project folder: $HARNESS_ROOT, or the nearest folder upwards holding ablations/."""
    env = os.environ.get("HARNESS_ROOT")
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / "ablations").is_dir():
            raise HarnessError(f"HARNESS_ROOT={env}: no ablations/ folder there")
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "ablations").is_dir():
            return folder
    raise HarnessError(f"no ablations/ folder in {here} or above; run from the project folder")


class Registry:
    """The entries of one `ablations/` folder, loaded lazily and cached."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.folder = self.root / "ablations"
        self._entries: dict[str, Entry] = {}
        self._written: dict[str, Spec] = {}  # entries checked as written, by name

    def names(self) -> list[str]:
        """The entry names in ablations/ (files that may still prove unreadable or bad)."""
        try:
            found = [p.name for p in os.scandir(self.folder)]
        except OSError as exc:
            raise HarnessError(f"{self.rel(self.folder)}/: cannot list its entries ({exc.strerror or exc})") from None
        return sorted(n[:-5] for n in found if n.endswith(".yaml") and NAME_PATTERN.fullmatch(n[:-5]))

    def path_of(self, name: str) -> Path:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            shown = name if not isinstance(name, str) or len(name) <= 70 else name[:67] + "..."
            raise HarnessError(f"bad entry name {shown!r}: use 1-64 lower-case letters, digits and _")
        return self.folder / f"{name}.yaml"

    def entry(self, name: str, needed_by: Optional[str] = None) -> Entry:
        """Load one entry file (meta keys checked; sections validated at resolve time)."""
        if name in self._entries:
            return self._entries[name]
        path = self.path_of(name)
        where = self.rel(path)
        try:
            kind = path.stat().st_mode if path.exists() else None
        except OSError as exc:  # a symlink loop, a folder we may not enter
            raise HarnessError(f"{where}: cannot be read ({exc.strerror or exc})") from None
        if kind is not None and not stat.S_ISREG(kind):
            raise HarnessError(f"{where}: not a regular file ({_kind_of(kind)}); an entry is a YAML file")
        if path.is_symlink() and kind is None:
            raise HarnessError(f"{where}: a symbolic link to nothing ({os.readlink(path)})")
        if kind is None:
            hint = did_you_mean(name, [n for n in self.names() if n != name])
            if needed_by:
                raise HarnessError(f"{self.rel(self.path_of(needed_by))}: extends: no entry {name!r}{hint}")
            raise HarnessError(f"unknown entry {name!r}{hint}; `harness list` shows them all")
        raw = load_yaml_file(path, where)
        if raw is None or raw == {}:
            raise HarnessError(
                f"{where}: empty entry: it sets nothing (write `extends: PARENT` and what the step changes)"
            )
        if not isinstance(raw, dict):
            raise HarnessError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
        entry = _entry_from_raw(name, path, where, raw)
        self._entries[name] = entry
        return entry

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def chain(self, name: str) -> list[Entry]:
        """Root first. A cycle or missing parent is a HarnessError naming the file."""
        chain: list[Entry] = []
        seen: list[str] = []
        current: Optional[str] = name
        needed_by: Optional[str] = None
        while current is not None:
            if current in seen:
                loop = " -> ".join([*seen, current])
                raise HarnessError(f"{self.rel(self.path_of(seen[-1]))}: extends: cycle {loop}")
            seen.append(current)
            entry = self.entry(current, needed_by)
            chain.append(entry)
            needed_by, current = current, entry.parent
        return list(reversed(chain))

    def resolve(self, name: str, overrides: tuple[str, ...] | list[str] = ()) -> Resolved:
        """Merge the chain, apply `--set key=value` overrides, validate the result."""
        chain = self.chain(name)
        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for entry in chain:
            _merge(merged, entry.config, self.rel(entry.path), sources, prefix="")
            spec = self._check_as_written(entry, merged, sources)
        if overrides:
            for text in overrides:
                key, value = parse_override(text)
                apply_override(merged, key, value, sources)
            spec = validate(merged, sources, self.rel(chain[-1].path))
        builder_source = None
        if spec.model.builder is not None:
            where = source_of(sources, "model.builder", DEFAULT)
            builder_source = source_hash(self.root, spec.model.builder, where)
        return Resolved(
            entry=chain[-1],
            chain=tuple(e.name for e in chain),
            spec=spec,
            sources=sources,
            overrides=tuple(overrides),
            builder_source=builder_source,
        )

    def _check_as_written(self, entry: Entry, merged: dict, sources: dict[str, str]) -> Spec:
        """Validate one entry of a chain with its ancestors merged and no override, its
        search block too: an override can change a value, never hide a file's bad one."""
        if entry.name not in self._written:
            where = self.rel(entry.path)
            spec = validate(merged, sources, where)

            def check_value(key: str, value: Any) -> None:
                candidate = copy.deepcopy(merged)
                apply_override(candidate, key, value, dict(sources))
                validate(candidate, sources, where)

            dimensions_of(entry.search, flatten(spec.model_dump(mode="json")), where, check_value)
            self._written[entry.name] = spec
        return self._written[entry.name]

    def children(self, warn: Optional[Callable[[str], None]] = None) -> dict[Optional[str], list[str]]:
        """parent -> child names, for the lineage tree. An entry that cannot be read or
        resolved as written is left out, with a warning through `warn` (else it raises)."""
        tree: dict[Optional[str], list[str]] = {}
        said: set[str] = set()
        for name in self.names():
            try:
                self.resolve(name)  # every file of its chain as written
            except HarnessError as exc:
                if warn is None:
                    raise
                if str(exc) not in said:  # a bad ancestor is said once, not once per descendant
                    said.add(str(exc))
                    warn(f"skipped {exc}")
                continue
            tree.setdefault(self.entry(name).parent, []).append(name)
        return tree

    def history(self, name: str) -> list[str]:
        """The chain of `name` as names, root first."""
        return [e.name for e in self.chain(name)]


def _entry_from_raw(name: str, path: Path, where: str, raw: dict) -> Entry:
    config: dict[str, Any] = {}
    for key, value in raw.items():
        if key in META_KEYS:
            continue
        if key not in SECTIONS:
            hint = did_you_mean(str(key), [*META_KEYS, *SECTIONS])
            raise HarnessError(f"{where}: unknown key {key!r}{hint}")
        if value is not None and not isinstance(value, dict):
            raise HarnessError(f"{where}: {key}: expected a mapping, got {show_value(value)}")
        config[key] = value or {}
    parent = raw.get("extends")
    if parent is not None and (not isinstance(parent, str) or not NAME_PATTERN.fullmatch(parent)):
        raise HarnessError(f"{where}: extends: expected an entry name, got {show_value(parent)}")
    if parent == name:
        raise HarnessError(f"{where}: extends: cycle {name} -> {name}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise HarnessError(f"{where}: description: expected text, got {show_value(description)}")
    report = raw.get("report") or {}
    if not isinstance(report, dict):
        raise HarnessError(f"{where}: report: expected a mapping, got {show_value(report)}")
    try:
        claims = ReportClaims(**{str(k): v for k, v in report.items()})
    except ValidationError as exc:
        raise HarnessError(validation_message(exc, where, "report", ReportClaims)) from None
    search = raw.get("search") or {}
    if not isinstance(search, dict):
        raise HarnessError(f"{where}: search: expected a mapping, got {show_value(search)}")
    return Entry(
        name=name,
        path=path,
        parent=parent,
        description=" ".join(description.split()),
        report=claims,
        search=search,
        config=config,
    )


def _merge(base: dict, update: dict, origin: str, sources: dict[str, str], prefix: str) -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            if not isinstance(base.get(key), dict):
                if key in base:  # a feature switched on here: its unset keys come with it
                    forget_below(sources, dotted)
                    sources[dotted] = origin
                base[key] = {}
            _merge(base[key], value, origin, sources, f"{dotted}.")
        else:
            base[key] = copy.deepcopy(value)
            forget_below(sources, dotted)
            sources[dotted] = origin


def validate(merged: dict, sources: dict[str, str], fallback: str) -> Spec:
    """Validate a merged config against the schema; the first problem becomes one line."""
    try:
        return Spec(**merged)
    except ValidationError as exc:
        raise HarnessError(validation_message(exc, None, "", Spec, sources, fallback)) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise HarnessError(f"{fallback}: invalid config: {exc}") from None


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"
