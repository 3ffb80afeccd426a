"""Before a run exists: an entry resolved, its data loaded, everything checked that can be
checked, and the tags it will carry. Nothing here writes to the store, so bad input fails
with nothing in MLflow. Imports no TensorFlow."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.data import sources as data_module
from harness.data.splits import is_class
from harness.entries.diffs import Diff, diff_against_parent
from harness.entries.registry import Registry, Resolved
from harness.errors import HarnessError
from harness.interrupts import GUARD
from harness.tracking.names import RANKED_KINDS, Tag, experiment_name
from harness.training import geometry


@dataclass(frozen=True)
class Planned:
    """A validated run: the resolved entry, its diff, its data; nothing written yet."""

    resolved: Resolved
    diff: Diff
    data: data_module.Dataset

    @property
    def spec(self):
        return self.resolved.spec

    @property
    def experiment(self) -> str:
        """The MLflow experiment of its dataset (tracking.experiment_name)."""
        return experiment_name(self.data.source, self.spec.data.subset)


def plan(registry: Registry, name: str, overrides: Sequence[str] = ()) -> Planned:
    """Resolve, diff and load the data of an entry, and check that the model fits the images
    and the class weights name real classes. Raises HarnessError on bad input."""
    resolved = registry.resolve(name, list(overrides))
    diff = diff_against_parent(registry, resolved)
    d = resolved.spec.data
    dataset = data_module.load(d.source, d.val_fraction, d.subset, d.seed)
    GUARD.check()
    preflight(resolved, dataset, registry.root)
    return Planned(resolved, diff, dataset)


def preflight(resolved: Resolved, dataset: data_module.Dataset, root: Path) -> None:
    """What can only be checked with the data in hand, checked before the store is opened:
    the model fits the images (a model.builder's is built once: its params, its output),
    the class weights name real classes."""
    geometry.check(resolved.spec.model, dataset.input_shape)
    if resolved.spec.model.builder is not None:
        from harness.training import builders

        builders.build(resolved.spec.model, dataset.input_shape, dataset.num_classes, root, resolved.source_of)
    boost = resolved.spec.training.class_weight.boost if resolved.spec.training.class_weight else {}
    for key in boost:
        if not is_class(key, dataset.class_names):
            where = resolved.source_of(f"training.class_weight.boost.{key}")
            raise HarnessError(
                f"{where}: training.class_weight.boost: no class {key!r} in {dataset.source} "
                f"(classes: {', '.join(dataset.class_names)})"
            )


def run_tags(planned: Planned, kind: str, root: Path, settings: Sequence[str] = ()) -> dict[str, str]:
    """The tags every harness run carries (README, Tracking); `settings` are the overrides
    the user gave apart from the entry (settings.py). A group carries no seed: the caller
    removes it."""
    from harness.entries import settings as run_settings

    r = planned.resolved
    commit = git_commit(root)
    source = {"mlflow.source.name": _relative(r.entry.path, root), "mlflow.source.type": "LOCAL"}
    if commit != "unknown":
        source["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    return {
        **source,
        Tag.SETTINGS: run_settings.label(settings),
        Tag.SETTINGS_FINGERPRINT: run_settings.fingerprint(settings),
        Tag.ENTRY: r.name,
        Tag.PARENT: r.parent or "",
        Tag.CHAIN: " > ".join(r.chain),
        Tag.KIND: kind,
        **({Tag.RANKED: "yes"} if kind in RANKED_KINDS else {}),
        Tag.STEP: step_label(r),
        Tag.SPEC_FINGERPRINT: r.fingerprint(),
        Tag.DATASET_FINGERPRINT: planned.data.fingerprint,
        Tag.DATASET: planned.data.source,
        Tag.SEED: str(r.spec.training.seed),
        Tag.OVERRIDES: " ".join(r.overrides),
        Tag.GIT_COMMIT: commit,
        "mlflow.note.content": r.entry.description,
    }


def _relative(path: Path, root: Path) -> str:
    """The entry's file as MLflow's Source column shows it: ablations/NAME.yaml."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def step_label(resolved: Resolved) -> str:
    """The entry's position in its history and its name, '01 baseline' .. '15 final': sorting
    the runs table by this tag gives the report's order (a branch follows its parent)."""
    return f"{len(resolved.chain):02d} {resolved.name}"


def git_commit(root: Path) -> str:
    """HEAD of the project, with -dirty when ablations/ or harness/ have local changes. Runs
    no repository hook (fsmonitor, hooksPath): the project may be someone else's clone."""
    git = ["git", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null"]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "ablations", "harness"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
