"""Whether a step could act at the budget its runs had: a step whose every change is inert
there (early stopping that cannot fire, a plateau scheduler that cannot reduce in time or
whose floor is the learning rate, class weights that are all 1, augmentation with zero
ranges, a key that only records) is `cannot act at this budget`, never a change of +0.0000
with p 1 read as "tested and useless".

It reads what the runs ran with (their params, the whole resolved spec), so settings such
as --epochs 4 count: the lr_scheduler step's 100 epochs are then not a change at all."""

from __future__ import annotations

import json
from typing import Optional

from harness.results.evidence import Evidence, Member

RECORD_ONLY = ("training.system_metrics", "resolved.pipeline")  # keys that record a run without changing it
NOT_A_STEP = ("training.seed",)  # varies inside a group, never between steps
UNIT_WEIGHT = 0.02  # class weights within this of 1.0 change nothing worth a step


def cannot_act(child: Evidence, parent: Evidence) -> Optional[str]:
    """Why none of the step's changes can act at the runs' budget, or None if one can."""
    if not child.members or not parent.members:
        return None
    mine, theirs = child.members[0], parent.members[0]
    changed = sorted(
        key
        for key in set(mine.params) | set(theirs.params)
        if mine.params.get(key) != theirs.params.get(key) and key not in NOT_A_STEP
    )
    if not changed:
        return "it changes nothing with these settings"
    reasons = []
    for key in changed:
        reason = _inert(key, mine)
        if reason is None:
            return None
        reasons.append(reason)
    return "; ".join(dict.fromkeys(reasons))


def _inert(key: str, run: Member) -> Optional[str]:
    """Why changing `key` cannot act in this run, or None if it can."""
    params = run.params
    epochs = _number(params.get("training.epochs"))
    if key in RECORD_ONLY:
        return "it changes only what is recorded"
    if key.startswith("training.early_stopping"):
        patience = _number(params.get("training.early_stopping.patience"))
        if patience is not None and epochs is not None and patience >= epochs:
            return f"early stopping's patience {patience} >= {epochs} epochs: it cannot fire"
        return None
    if key.startswith("training.lr_schedule"):
        patience = _number(params.get("training.lr_schedule.patience"))
        if patience is not None and epochs is not None and epochs < patience + 2:
            return f"the LR scheduler's patience {patience} needs {patience + 2}+ epochs to act, the runs had {epochs}"
        floor = _number(params.get("training.lr_schedule.min_lr"), float)
        rate = _number(params.get("optimizer.learning_rate"), float)
        if floor is not None and rate is not None and floor >= rate:  # Keras reduces only above min_lr
            return f"the LR scheduler's min_lr {floor:g} >= the learning rate {rate:g}: it cannot reduce"
        return None
    if key.startswith("training.class_weight"):
        weights = _weights(run.resolved_class_weights)
        if weights and all(abs(w - 1.0) <= UNIT_WEIGHT for w in weights):
            return "class weights all about 1.00: a balanced set and no boosts"
        return None
    if key.startswith("model.augment"):
        translate = _number(params.get("model.augment.translate"), float)
        flip = params.get("model.augment.flip")
        if not translate and flip in (None, "None", ""):
            return "augmentation with zero ranges"
        return None
    return None


def _number(text: Optional[str], kind=int):
    try:
        return kind(float(text)) if text not in (None, "None", "") else None
    except ValueError:
        return None


def _weights(text: str) -> list[float]:
    try:
        found = json.loads(text) if text and text != "none" else {}
    except ValueError:
        return []
    return [float(v) for v in found.values()] if isinstance(found, dict) else []
