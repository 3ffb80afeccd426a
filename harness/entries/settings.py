"""A run's settings: the overrides it was given apart from its entry (--set, --epochs), less
those that say where and which run it is (data.source and data.subset name the dataset, the
experiment; training.seed varies inside a seed group) and training.system_metrics, which
only records. Two runs compare like with like
only when their settings match: a 2-epoch smoke run never stands beside a full one unnoticed.
Imports no TensorFlow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from harness.entries.overrides import parse_override

NOT_SETTINGS = ("data.source", "data.subset", "training.seed", "training.system_metrics")
AS_WRITTEN = "as written"  # the label of no overrides: the entries as their files say


def normalized(overrides: Sequence[str]) -> list[tuple[str, object]]:
    """The settings of a list of overrides: parsed, the last of each key kept, sorted."""
    values: dict[str, object] = {}
    for text in overrides:
        key, value = parse_override(text)
        if key not in NOT_SETTINGS:
            values[key] = value
    return sorted(values.items())


def label(overrides: Sequence[str]) -> str:
    """How settings read: 'training.epochs=2 training.batch_size=64', or 'as written'."""
    pairs = normalized(overrides)
    return " ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in pairs) or AS_WRITTEN


def fingerprint(overrides: Sequence[str]) -> str:
    """Equal for equal settings, whatever their order or spelling on the command line."""
    canonical = json.dumps(normalized(overrides), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
