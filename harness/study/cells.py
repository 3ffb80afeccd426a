"""The cells of a `harness study`: every step of the target's history, and with
--leave-one-out every runnable variant of the target, each over every seed. A cell is one
training run; its identity is the spec it trains (a fingerprint), so workers on other
machines can check that they train what the study planned. Imports no TensorFlow."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Optional

from harness.entries import settings as run_settings
from harness.entries.registry import Registry
from harness.errors import HarnessError
from harness.study.leave_one_out import leave_one_out, variant_title


@dataclass(frozen=True)
class Cell:
    """One training run of the study: an entry (or a leave-one-out variant of it) and a seed."""

    entry: str
    seed: int
    variant: Optional[str] = None  # "without adam"
    variant_overrides: tuple[str, ...] = ()
    fingerprint: str = ""  # of the resolved spec, seed included
    cost: float = 0.0  # its work: multiply-adds per image x images x epochs (0: unknown, a backbone)

    @property
    def group(self) -> str:
        """The seed group the cell belongs to: the entry, or the entry and its variant."""
        return f"{self.entry} {self.variant}" if self.variant else self.entry

    @property
    def label(self) -> str:
        """As one reads it: 'adam seed 0', 'final without adam seed 1', 'final without its own step seed 0'."""
        shown = variant_title(self.entry, self.variant.removeprefix("without ")) if self.variant else self.entry
        return f"{shown} seed {self.seed}"

    def to_attrs(self, index: int) -> dict:
        """As the user attributes of its Optuna trial (JSON)."""
        return {"cell": index, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}}

    @classmethod
    def from_attrs(cls, attrs: dict) -> Cell:
        return cls(
            attrs["entry"],
            int(attrs["seed"]),
            attrs.get("variant"),
            tuple(attrs.get("variant_overrides") or ()),
            attrs.get("fingerprint", ""),
            float(attrs.get("cost") or 0.0),
        )


@dataclass(frozen=True)
class StudyPlan:
    """A study as asked for: the target entry, the user's overrides (its settings), the seeds
    to start with, whether it includes the leave-one-out variants, and with --seeds auto the
    most seeds a step may get (None: the seeds are fixed)."""

    target: str
    overrides: tuple[str, ...]
    seeds: tuple[int, ...]
    leave_one_out: bool
    auto_max: Optional[int] = None

    def name(self, experiment: str) -> str:
        """The Optuna study's name: the same command on the same data joins the same study."""
        seeds: object = list(self.seeds) if self.auto_max is None else f"auto<={self.auto_max}"
        key = json.dumps([run_settings.fingerprint(self.overrides), seeds, self.leave_one_out])
        return f"history:{self.target}@{experiment}/{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def plan_cells(registry: Registry, plan: StudyPlan) -> list[Cell]:
    """Every cell of the study, in history order (the variants after the history)."""
    chain = registry.history(plan.target)
    cells = [_cell(registry, plan, entry, seed) for entry in chain for seed in plan.seeds]
    if plan.leave_one_out:
        for variant in leave_one_out(registry, plan.target, list(plan.overrides)):
            if variant.runnable:
                label = f"without {variant.step}"
                for seed in plan.seeds:
                    cells.append(
                        _cell(
                            registry, plan, plan.target, seed, variant=label, variant_overrides=tuple(variant.overrides)
                        )
                    )
    return cells


def _cell(
    registry: Registry,
    plan: StudyPlan,
    entry: str,
    seed: int,
    *,
    variant: Optional[str] = None,
    variant_overrides: tuple[str, ...] = (),
) -> Cell:
    resolved = registry.resolve(entry, [*plan.overrides, *variant_overrides, f"training.seed={seed}"])
    return Cell(entry, seed, variant, variant_overrides, resolved.fingerprint())


def check_same_specs(planned: list[Cell], recorded: list[dict]) -> None:
    """A worker must train what the study planned: its entries must resolve to the same specs."""
    recorded_cells = {(c["entry"], c.get("variant"), int(c["seed"])): c.get("fingerprint") for c in recorded}
    for cell in planned:
        theirs = recorded_cells.get((cell.entry, cell.variant, cell.seed))
        if theirs != cell.fingerprint:
            raise HarnessError(
                f"this worker's {cell.label} is spec {cell.fingerprint}, "
                f"the study's is {theirs or 'not in the study'}: "
                "run every worker from the same commit of ablations/ (or start another study with --name)"
            )
