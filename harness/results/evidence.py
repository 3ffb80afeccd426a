"""The runs behind a comparison: every FINISHED run of one dataset read in one query, then
per entry the latest run or seed group made with the same settings (settings.py), and its
values per seed. Leave-one-out variants and tune trials never stand in for an entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from harness.entries import settings as run_settings
from harness.results.stats import Summary, summarize
from harness.tracking.names import Tag

if TYPE_CHECKING:
    from harness.tracking.protocol import RunStore

ENTRY_KINDS = ("run", "group")  # what stands for an entry (a group through its seed runs)


@dataclass(frozen=True)
class Member:
    """One training run behind a row: its id, its seed, its final metrics and params, and
    the fingerprint of the data it was validated on (runs pair only on the same images)."""

    run_id: str
    seed: Optional[int]
    metrics: dict[str, float]
    params: dict[str, str]
    dataset_fingerprint: str
    resolved_class_weights: str = ""


@dataclass
class Evidence:
    """The runs behind one row: their ids, each final metric's values (one per seed), and
    the settings they were made with; `members` keeps each run with its seed, for pairing."""

    name: str
    run_ids: list[str]
    kind: str
    values: dict[str, list[float]] = field(default_factory=dict)
    settings: str = run_settings.AS_WRITTEN
    run_id: str = ""  # the single run or the group run
    members: list[Member] = field(default_factory=list)

    def by_seed(self, metric: str) -> dict[int, Member]:
        """The members that logged `metric`, by seed (members without a seed left out)."""
        return {m.seed: m for m in self.members if m.seed is not None and metric in m.metrics}

    def n(self, metric: str) -> int:
        return len(self.values.get(metric, []))

    def mean(self, metric: str) -> Optional[float]:
        values = self.values.get(metric)
        return summarize(values).mean if values else None

    def std(self, metric: str) -> Optional[float]:
        values = self.values.get(metric)
        return summarize(values).std if values else None

    def summary(self, metric: str) -> Optional[Summary]:
        values = self.values.get(metric)
        return summarize(values) if values else None


def stands_for(run, entry: str) -> bool:
    """Whether a run is the entry's: its own, or one of the same spec it was found to be."""
    tags = run.data.tags
    return tags.get(Tag.ENTRY) == entry or entry in tags.get(Tag.ALIASES, "").split(",")


def settings_of(run) -> tuple[str, str]:
    """(fingerprint, label) of a run's settings; runs made before the settings tags existed
    get them from their overrides tag."""
    tags = run.data.tags
    if Tag.SETTINGS_FINGERPRINT in tags:
        return tags[Tag.SETTINGS_FINGERPRINT], tags.get(Tag.SETTINGS, "")
    overrides = tags.get(Tag.OVERRIDES, "").split()
    try:
        return run_settings.fingerprint(overrides), run_settings.label(overrides)
    except Exception:  # noqa: BLE001 - an unparsable old tag: its own settings, unlike any other
        return f"?{tags.get(Tag.OVERRIDES, '')}", tags.get(Tag.OVERRIDES, "")


class RunIndex:
    """The FINISHED runs of one experiment, newest first, read once."""

    def __init__(self, store: RunStore, experiment_id: str):
        self.store, self.experiment_id = store, experiment_id
        self.runs = store.runs(experiment_id, status="FINISHED")
        self.by_id = {run.info.run_id: run for run in self.runs}

    def candidates(self, entry: str) -> list[Any]:
        """An entry's plain runs and seed groups, newest first: its own, and those of another
        entry of the same spec that run-ablation found done for it (the aliases tag)."""
        return [
            run
            for run in self.runs
            if stands_for(run, entry)
            and run.data.tags.get(Tag.KIND) in ENTRY_KINDS
            and not run.data.tags.get(Tag.VARIANT)
        ]

    def latest(self, entry: str, fingerprint: Optional[str] = None) -> Optional[Evidence]:
        """The entry's latest run or group with these settings (any, when None)."""
        for run in self.candidates(entry):
            if fingerprint is None or settings_of(run)[0] == fingerprint:
                return self.evidence(run, entry)
        return None

    def pinned_or_latest(self, entry: str, fingerprint: Optional[str], pinned: dict[str, str]) -> Optional[Evidence]:
        """The run pinned for this entry (a study's own seed group; none, pinned as "", when
        the study has no finished group for it), else the latest."""
        if entry in pinned:
            if not pinned[entry]:
                return None
            run = self.by_id.get(pinned[entry]) or self.store.get_run(pinned[entry])
            return self.evidence(run, entry) if run.info.status == "FINISHED" else None
        return self.latest(entry, fingerprint)

    def other_settings(self, entry: str, fingerprint: Optional[str]) -> list[str]:
        """The settings an entry has runs with, other than these (newest first)."""
        labels: list[str] = []
        for run in self.candidates(entry):
            fp, label = settings_of(run)
            if fp != fingerprint and label not in labels:
                labels.append(label)
        return labels

    def latest_settings(self, entries: list[str]) -> Optional[tuple[str, str]]:
        """(fingerprint, label) of the most recent run or group among these entries."""
        for run in self.runs:
            tags = run.data.tags
            ours = any(stands_for(run, entry) for entry in entries)
            if ours and tags.get(Tag.KIND) in ENTRY_KINDS and not tags.get(Tag.VARIANT):
                return settings_of(run)
        return None

    def members(self, run) -> list[Any]:
        """The runs a group stands for: its members tag (trained and reused seeds), else its
        finished children; a single run stands for itself."""
        tags = run.data.tags
        if not tags.get(Tag.SEEDS):
            return [run]
        ids = [i for i in tags.get(Tag.MEMBERS, "").split(",") if i]
        if ids:
            found = [self.by_id.get(i) or self.store.get_run(i) for i in ids]
            return [r for r in found if r.info.status == "FINISHED"] or [run]
        children = [r for r in self.runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        return children or [run]

    def evidence(self, run, label: str) -> Evidence:
        """A run or group as evidence: every final metric's values, one per seed."""
        values: dict[str, list[float]] = {}
        members = self.members(run)
        for member in members:
            for key, value in member.data.metrics.items():
                values.setdefault(key, []).append(float(value))
        kind = run.data.tags.get(Tag.KIND, "run")
        ids = [m.info.run_id for m in members]
        kept = [_member(m) for m in members]
        return Evidence(label, ids, kind, values, settings_of(run)[1], run.info.run_id, kept)


def _member(run) -> Member:
    tags = run.data.tags
    seed_text = tags.get(Tag.SEED) or run.data.params.get("training.seed", "")
    return Member(
        run_id=run.info.run_id,
        seed=int(seed_text) if str(seed_text).isdigit() else None,
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        params=dict(run.data.params),
        dataset_fingerprint=tags.get(Tag.DATASET_FINGERPRINT, ""),
        resolved_class_weights=tags.get(f"{Tag.RESOLVED_PREFIX}class_weights", ""),
    )
