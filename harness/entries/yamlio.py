"""Safe YAML loading with the traps of YAML 1.1 closed: `1e-4` read as a string, duplicate
keys silently overwriting each other, and aliases that expand a small file into billions of
values (every later walk of the document would take minutes and end in MemoryError)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import yaml

from harness.errors import HarnessError

MAX_BYTES = 256 * 1024  # an entry is a few hundred bytes; anything this big is a mistake
MAX_VALUES = 100_000  # values in a document once its aliases are expanded


class StrictSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that reads `1e-4` as a float and rejects duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 wants a dot in a float (1.0e-4); people write 1e-4. Accept both as floats.
StrictSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, where: str) -> Any:
    """Parse one YAML document safely; a syntax error, a document too large once its aliases
    are expanded, or one that contains itself becomes a one-line HarnessError."""
    try:
        document = yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HarnessError(f"{where}: malformed YAML{line}: {problem}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise HarnessError(f"{where}: malformed YAML: {exc}") from None
    if expanded_size(document) > MAX_VALUES:
        raise HarnessError(
            f"{where}: YAML aliases expand to more than {MAX_VALUES:,} values (or refer to themselves); "
            f"write the values out"
        )
    bad = _not_unicode(document)
    if bad is not None:
        raise HarnessError(f"{where}: text that is not valid Unicode: {bad!r} (a lone surrogate escape)")
    return document


def _not_unicode(document: Any) -> Optional[str]:
    """The first text in the document that cannot be written as UTF-8 (a lone surrogate,
    as YAML's "\\ud800" escape makes), else None; each shared node looked at once."""
    seen: set[int] = set()
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return node[:40]
        elif isinstance(node, (dict, list)) and id(node) not in seen:
            seen.add(id(node))
            stack.extend([*node.keys(), *node.values()] if isinstance(node, dict) else node)
    return None


def expanded_size(document: Any) -> int:
    """How many values the document holds with every alias expanded, counted without
    expanding: a node shared by aliases is measured once. A node that contains itself
    counts as too large."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_VALUES + 1  # still being measured: a cycle lands here
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                break
        sizes[id(node)] = total
        return total

    try:
        return size(document)
    except RecursionError:
        return MAX_VALUES + 1


def yaml_scalar(value: Any) -> str:
    """A value as YAML text that reads back as the same value (for `--set key=value`).
    Text is always quoted: YAML would read `1e-4`, `yes` or `a #b` unquoted as other values."""
    if isinstance(value, str):
        return json.dumps(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("\n...").strip()


def load_yaml_file(path: Path, where: str) -> Any:
    """Read and parse a YAML file; unreadable, undecodable or oversized files are HarnessErrors."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise HarnessError(f"{where}: {size:,} bytes, more than an entry can be ({MAX_BYTES:,})")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{where}: cannot read: {exc}") from None
    return parse_yaml(text, where)


def dump_yaml(data: Any) -> str:
    """YAML text for a plain dict, keys in the given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
