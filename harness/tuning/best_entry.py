"""A finished study written out as a new entry: `extends` the tuned one, with the best
trial's values and where they came from, so tuned configs stay declarative and reviewable."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import TrialState

from harness.entries.registry import Registry
from harness.entries.yamlio import dump_yaml
from harness.errors import HarnessError
from harness.tracking.names import experiment_name
from harness.tuning.storage import open_storage, study_name_for


def load_study(root: Path, name: str, overrides: Sequence[str], storage_url: Optional[str]):
    """The existing study of an entry (same dataset and overrides as when it was tuned)."""
    registry = Registry(root)
    resolved = registry.resolve(name, list(overrides))
    subset = resolved.spec.data.subset
    study_name = study_name_for(resolved, experiment_name(resolved.spec.data.source, subset))
    storage, label = open_storage(root, storage_url)
    try:
        return optuna.load_study(study_name=study_name, storage=storage), label
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(f"{name}@")]
        hint = f"; studies of {name}: {', '.join(known)}" if known else ""
        raise HarnessError(
            f"no study {study_name!r} in {label} (tune it first, with the same --dataset/--set){hint}"
        ) from None


def check_new_name(root: Path, new_name: str, force: bool = False) -> Path:
    """The file a new entry would be written to: a valid name, and not an existing file."""
    registry = Registry(root)
    path = registry.path_of(new_name)
    if path.exists() and not force:
        raise HarnessError(f"{registry.rel(path)} exists; choose another name or pass --force")
    return path


def write_best_entry(
    root: Path,
    name: str,
    new_name: str,
    overrides: Sequence[str] = (),
    storage_url: Optional[str] = None,
    force: bool = False,
) -> Path:
    """Write ablations/NEW.yaml: extends NAME, the study's best values, and where they came from."""
    registry = Registry(root)
    path = check_new_name(root, new_name, force)
    study, label = load_study(root, name, overrides, storage_url)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        raise HarnessError(f"study {study.study_name} has no complete trial yet")
    best = study.best_trial
    resolved = registry.resolve(name, list(overrides))
    sections = nest_values({k: _readable(v) for k, v in best.params.items()}, resolved.spec.model_dump(mode="json"))
    tuned_with = [o for o in overrides if not o.startswith("data.source=")]
    description = (
        f"{name} tuned by Optuna study {study.study_name} ({label}): best trial {best.number} of "
        f"{len(study.trials)}, {study.user_attrs.get('metric', 'val_accuracy')} {best.value:.4f}"
        + (f"; tuned with --set {' '.join(tuned_with)}" if tuned_with else "")
        + "."
    )
    document = {"extends": name, "description": description, **sections}
    path.write_text(f"# Written by `harness save-best {name} {new_name}`.\n" + dump_yaml(document))
    try:
        Registry(root).resolve(new_name)
    except HarnessError:
        path.unlink()
        raise
    return path


SIGNIFICANT = 4  # digits a tuned value keeps in the written entry: more is noise from the sampler


def _readable(value: Any) -> Any:
    """A sampled float to SIGNIFICANT digits (0.0036744137848 -> 0.003674); others as they are."""
    return float(f"{value:.{SIGNIFICANT}g}") if isinstance(value, float) else value


def nest_values(values: dict[str, Any], resolved_tree: dict[str, Any]) -> dict[str, Any]:
    """Dotted best values -> entry sections. A key inside a list writes the whole list (lists
    replace when entries merge), taken from the resolved spec with the item changed."""
    out: dict[str, Any] = {}
    lists: dict[str, Any] = {}
    for key, value in values.items():
        parts = key.split(".")
        index = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        if index is None:
            node = out
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
            continue
        list_key = ".".join(parts[:index])
        if list_key not in lists:
            node = resolved_tree
            for part in parts[:index]:
                node = node[part]
            lists[list_key] = copy.deepcopy(node)
        item = lists[list_key][int(parts[index])]
        for part in parts[index + 1 : -1]:
            item = item[part]
        item[parts[-1]] = value
    for list_key, value in lists.items():
        parts = list_key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out
