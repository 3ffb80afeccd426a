"""Safe YAML loading with the two traps of YAML 1.1 closed: `1e-4` read as a string, and
duplicate keys silently overwriting each other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import HarnessError


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
    """Parse one YAML document safely; a syntax error becomes a one-line HarnessError."""
    try:
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HarnessError(f"{where}: malformed YAML{line}: {problem}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise HarnessError(f"{where}: malformed YAML: {exc}") from None


def load_yaml_file(path: Path, where: str) -> Any:
    """Read and parse a YAML file; unreadable or undecodable files are HarnessErrors."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{where}: cannot read: {exc}") from None
    return parse_yaml(text, where)


def dump_yaml(data: Any) -> str:
    """YAML text for a plain dict, keys in the given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
