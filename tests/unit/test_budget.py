"""Whether a step could act at its runs' budget, read from the params the runs ran with."""

from __future__ import annotations

from harness.results.budget import cannot_act
from harness.results.evidence import Evidence, Member

BASE = {
    "training.epochs": "4",
    "optimizer.learning_rate": "0.001",
    "training.lr_schedule.patience": "None",
    "training.lr_schedule.min_lr": "None",
    "training.early_stopping.patience": "None",
}


def evidence(name: str, **changed: str) -> Evidence:
    params = {**BASE, **{key.replace("__", "."): value for key, value in changed.items()}}
    return Evidence(name, ["r"], "run", members=[Member("r", 0, {}, params, "d")])


def test_a_step_that_changes_nothing_with_these_settings_says_so():
    assert cannot_act(evidence("child"), evidence("parent")) == "it changes nothing with these settings"


def test_early_stopping_whose_patience_outlasts_the_epochs_cannot_fire():
    child = evidence("child", training__early_stopping__patience="5")
    assert cannot_act(child, evidence("parent")) == "early stopping's patience 5 >= 4 epochs: it cannot fire"
    sooner = evidence("child", training__early_stopping__patience="2")
    assert cannot_act(sooner, evidence("parent")) is None


def test_a_plateau_scheduler_with_its_floor_at_or_above_the_learning_rate_cannot_reduce():
    floored = evidence("child", training__lr_schedule__patience="1", training__lr_schedule__min_lr="1.5")
    assert cannot_act(floored, evidence("parent")) == (
        "the LR scheduler's min_lr 1.5 >= the learning rate 0.001: it cannot reduce"
    )
    below = evidence("child", training__lr_schedule__patience="1", training__lr_schedule__min_lr="1e-06")
    assert cannot_act(below, evidence("parent")) is None


def test_one_change_that_can_act_makes_the_step_able_to_act():
    child = evidence("child", training__early_stopping__patience="5", optimizer__learning_rate="0.01")
    assert cannot_act(child, evidence("parent")) is None
