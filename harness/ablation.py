"""Ablation entries: loading, `extends` resolution, provenance, diff and fingerprint.

An entry is `ablations/NAME.yaml`. Meta keys (extends, description, report, search) belong
to the entry alone; config sections merge down the `extends` chain: mappings key by key,
scalars and lists replace, `null` switches a feature off. The result is validated against
the strict schema in `spec.py`. Imports no TensorFlow, so `list` and `show` stay fast.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ValidationError

from .errors import HarnessError
from .spec import META_KEYS, SECTIONS, ReportClaims, Spec
from .yamlio import load_yaml_file, parse_yaml

NAME_PATTERN = re.compile(r"[a-z0-9_]{1,64}")  # fullmatch only: a file name, never a path
DEFAULT = "default"
OVERRIDE = "--set"


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
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            found = self.sources.get(".".join(parts[:end]))
            if found is not None:
                return found
        return DEFAULT

    def fingerprint(self) -> str:
        """Hash of the resolved spec: equal fingerprints mean the same experiment."""
        return spec_fingerprint(self.spec)


def spec_fingerprint(spec: Spec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
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


# --------------------------------------------------------------------------- the store


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

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.yaml") if NAME_PATTERN.fullmatch(p.stem))

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
        if not path.is_file():
            hint = _did_you_mean(name, self.names())
            if needed_by:
                raise HarnessError(
                    f"{self.rel(self.path_of(needed_by))}: extends: no entry {name!r}{hint}"
                )
            raise HarnessError(f"unknown entry {name!r}{hint}; `harness list` shows them all")
        where = self.rel(path)
        raw = load_yaml_file(path, where)
        if raw is None:
            raw = {}
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
        for text in overrides:
            key, value = parse_override(text)
            _apply_override(merged, key, value, sources)
        spec = validate(merged, sources, self.rel(chain[-1].path))
        return Resolved(
            entry=chain[-1],
            chain=tuple(e.name for e in chain),
            spec=spec,
            sources=sources,
            overrides=tuple(overrides),
        )

    def children(self, warn: Optional[Callable[[str], None]] = None) -> dict[Optional[str], list[str]]:
        """parent -> child names, for the lineage tree. An entry that cannot be read or
        resolved is left out, with a warning through `warn` (else it raises)."""
        tree: dict[Optional[str], list[str]] = {}
        for name in self.names():
            try:
                self.chain(name)
            except HarnessError as exc:
                if warn is None:
                    raise
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
            hint = _did_you_mean(str(key), [*META_KEYS, *SECTIONS])
            raise HarnessError(f"{where}: unknown key {key!r}{hint}")
        if value is not None and not isinstance(value, dict):
            raise HarnessError(f"{where}: {key}: expected a mapping, got {_show(value)}")
        config[key] = value or {}
    parent = raw.get("extends")
    if parent is not None and (not isinstance(parent, str) or not NAME_PATTERN.fullmatch(parent)):
        raise HarnessError(f"{where}: extends: expected an entry name, got {_show(parent)}")
    if parent == name:
        raise HarnessError(f"{where}: extends: cycle {name} -> {name}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise HarnessError(f"{where}: description: expected text, got {_show(description)}")
    report = raw.get("report") or {}
    if not isinstance(report, dict):
        raise HarnessError(f"{where}: report: expected a mapping, got {_show(report)}")
    try:
        claims = ReportClaims(**{str(k): v for k, v in report.items()})
    except ValidationError as exc:
        raise HarnessError(_validation_message(exc, where, "report", ReportClaims)) from None
    search = raw.get("search") or {}
    if not isinstance(search, dict):
        raise HarnessError(f"{where}: search: expected a mapping, got {_show(search)}")
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
                    _forget_below(sources, dotted)
                    sources[dotted] = origin
                base[key] = {}
            _merge(base[key], value, origin, sources, f"{dotted}.")
        else:
            base[key] = copy.deepcopy(value)
            _forget_below(sources, dotted)
            sources[dotted] = origin


def _forget_below(sources: dict[str, str], dotted: str) -> None:
    for stale in [k for k in sources if k.startswith(f"{dotted}.")]:
        del sources[stale]


def parse_override(text: str) -> tuple[str, Any]:
    """`key.path=value` -> (key.path, YAML-parsed value); anything else is a HarnessError."""
    if not isinstance(text, str) or "=" not in text:
        raise HarnessError(f"bad --set {text!r}: expected key=value, e.g. training.epochs=5")
    key, _, value_text = text.partition("=")
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+", key):
        raise HarnessError(f"bad --set {text!r}: key must be dotted, e.g. optimizer.name=adam")
    if key.split(".")[0] not in SECTIONS:
        hint = _did_you_mean(key.split(".")[0], list(SECTIONS))
        raise HarnessError(f"bad --set {text!r}: unknown section {key.split('.')[0]!r}{hint}")
    value = parse_yaml(value_text, f"--set {key}") if value_text.strip() else None
    return key, value


def _apply_override(merged: dict, key: str, value: Any, sources: dict[str, str]) -> None:
    parts = key.split(".")
    node: Any = merged
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise HarnessError(f"--set {key}: no item {part} in {'.'.join(parts[:depth])}")
            node = node[int(part)]
            continue
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise HarnessError(f"--set {key}: {'.'.join(parts[: depth + 1])} is not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise HarnessError(f"--set {key}: no item {last} in {'.'.join(parts[:-1])}")
        node[int(last)] = value
    else:
        node[last] = value
    _forget_below(sources, key)
    sources[key] = OVERRIDE


# --------------------------------------------------------------------------- validation


def validate(merged: dict, sources: dict[str, str], fallback: str) -> Spec:
    """Validate a merged config against the schema; the first problem becomes one line."""
    try:
        return Spec(**merged)
    except ValidationError as exc:
        raise HarnessError(_validation_message(exc, None, "", Spec, sources, fallback)) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise HarnessError(f"{fallback}: invalid config: {exc}") from None


def _validation_message(
    exc: ValidationError,
    where: Optional[str],
    prefix: str,
    model: type[BaseModel],
    sources: Optional[dict[str, str]] = None,
    fallback: str = "",
) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error.get("loc", ())]
    dotted = ".".join(([prefix] if prefix else []) + loc)
    if where is None:
        where = _origin(dotted, sources or {}, fallback)
    if error["type"] == "extra_forbidden":
        siblings = _field_names(model, loc[:-1])
        return f"{where}: {dotted}: unknown key{_did_you_mean(loc[-1], siblings)}"
    value = error.get("input")
    message = error.get("msg", "invalid value")
    message = message.replace("Value error, ", "").replace("Input should be", "expected")
    if error["type"] == "missing":
        return f"{where}: {dotted}: required key missing"
    return f"{where}: {dotted}: {message}, got {_show(value)}"


def _origin(dotted: str, sources: dict[str, str], fallback: str) -> str:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        found = sources.get(".".join(parts[:end]))
        if found is not None:
            return found
    return fallback


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


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- diffs


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


_ABSENT = object()


def _word(value: Any) -> str:
    if value is _ABSENT:
        return "(none)"
    return json.dumps(value) if not isinstance(value, str) else value


def diff_specs(old: Spec, new: Spec) -> list[Change]:
    """The dotted keys whose values differ between two specs."""
    a, b = flatten(old.model_dump(mode="json")), flatten(new.model_dump(mode="json"))
    changes = []
    for key in sorted(set(a) | set(b), key=lambda k: (k.split(".")[0], k)):
        va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if va == vb or _expanded(key, va, vb, a, b) or (_blank(va) and _blank(vb)):
            continue  # a null that appears with its section (a new list item) changes nothing
        changes.append(Change(key, va, vb))
    return changes


def _blank(value: Any) -> bool:
    return value is _ABSENT or value is None


def _expanded(key: str, va: Any, vb: Any, a: dict, b: dict) -> bool:
    """A feature switched on or off (null or [] <-> keys below it) shows as the keys below."""
    below = f"{key}."
    if vb is _ABSENT and va in (None, []):
        return any(k.startswith(below) for k in b)
    if va is _ABSENT and vb in (None, []):
        return any(k.startswith(below) for k in a)
    return False


def diff_against_parent(registry: Registry, resolved: Resolved) -> Diff:
    """What `resolved` changes against its parent (or the schema defaults, for a root)."""
    if resolved.parent is None:
        base = Spec()
    else:
        base = registry.resolve(resolved.parent).spec
    return Diff(resolved.name, resolved.parent, diff_specs(base, resolved.spec))
