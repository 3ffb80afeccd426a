"""The split memo: what a train/validation split of a source looks like (fingerprint, shape,
classes, sizes), remembered per source state. A command that only needs to know which data
a run would use (a run-ablation that finds its run done) then answers without loading the
data or importing scikit-learn, which alone takes about a second here.

The state of a source is what would change its split: scikit-learn's and NumPy's versions
for the bundled digits (their file and the splitting code), the names, sizes and modification
times of every image for a folder (as the folder cache keys it). CIFAR-10 from Keras's cache
is not memoised: it is always loaded. A memo that cannot be read or written is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Optional

from harness.data.image_folder import folder_state
from harness.data.splits import TEST_FRACTION, TEST_SEED, SplitFacts
from harness.paths import cache_dir

MEMO_VERSION = 1  # bump when the way splits are made changes


def key(source: str, val_fraction: float, subset: Optional[int], seed: int) -> Optional[str]:
    """The memo key of this split of `source` as it is now, or None for sources not memoised."""
    if source == "digits":
        state = f"scikit-learn {version('scikit-learn')}, numpy {version('numpy')}"
    elif source.startswith("folder:"):
        state = folder_state(Path(source[len("folder:") :]).expanduser())
    else:
        return None
    identity = [MEMO_VERSION, source, state, val_fraction, subset, seed, TEST_FRACTION, TEST_SEED]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]


def recall(memo_key: Optional[str]) -> Optional[SplitFacts]:
    """The facts remembered under this key, or None (not memoised, absent or unreadable)."""
    if memo_key is None:
        return None
    path = _path(memo_key)
    try:
        if not path.is_file():  # absent, or a FIFO or device that would block or never end
            return None
        raw = json.loads(path.read_text())
        facts = SplitFacts(
            fingerprint=str(raw["fingerprint"]),
            input_shape=tuple(int(n) for n in raw["input_shape"]),  # type: ignore[arg-type]
            input_dtype=str(raw["input_dtype"]),
            class_names=[str(n) for n in raw["class_names"]],
            sizes=(int(raw["sizes"][0]), int(raw["sizes"][1])),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError, OverflowError):
        return None
    plausible = (
        len(facts.input_shape) == 3
        and all(n > 0 for n in facts.input_shape)
        and len(facts.class_names) >= 2
        and min(facts.sizes) > 0
    )
    return facts if plausible else None


def remember(memo_key: Optional[str], facts: SplitFacts) -> None:
    """Keep the facts under this key; written whole or not at all (rename into place)."""
    if memo_key is None:
        return
    path = _path(memo_key)
    record = {
        "fingerprint": facts.fingerprint,
        "input_shape": list(facts.input_shape),
        "input_dtype": facts.input_dtype,
        "class_names": facts.class_names,
        "sizes": list(facts.sizes),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(record, out)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(partial)


def forget(memo_key: Optional[str]) -> None:
    """Drop the record under this key (it contradicted the data it describes)."""
    if memo_key is not None:
        with contextlib.suppress(OSError):
            _path(memo_key).unlink()


def _path(memo_key: str) -> Path:
    return cache_dir() / "splits" / f"{memo_key}.json"
