"""Which seed `--seeds auto` adds to a step: one pair more, at the fewest new runs. In a
history an entry is both the child of one step and the parent of the next, so it may already
hold seeds its own parent lacks."""

from __future__ import annotations

import random

from harness.runs.adaptive import paired_seed


def test_a_step_takes_the_seed_its_entry_already_ran_for_the_next_step():
    parent, child = {0, 1}, {0, 1, 2, 3}  # the child's own child step took seeds 2 and 3
    seed = paired_seed(child, parent)
    assert seed == 2  # the parent trains seed 2; the child's run of it is reused
    assert (child | {seed}) & (parent | {seed}) == {0, 1, 2}
    assert paired_seed(parent, child) == 2  # whichever side holds it


def test_sides_alike_take_the_smallest_seed_neither_has():
    assert paired_seed({0, 1, 2}, {0, 1, 2}) == 3
    assert paired_seed({0, 2}, {0, 2}) == 1
    assert paired_seed(set(), set()) == 0


def test_every_seed_added_makes_exactly_one_more_pair_and_at_most_one_run_where_the_sides_differ():
    rng = random.Random(7)
    for _ in range(500):
        mine = {s for s in range(8) if rng.random() < 0.5}
        theirs = {s for s in range(8) if rng.random() < 0.5}
        seed = paired_seed(mine, theirs)
        pairs_before, pairs_after = mine & theirs, (mine | {seed}) & (theirs | {seed})
        assert len(pairs_after) == len(pairs_before) + 1
        new_runs = (seed not in mine) + (seed not in theirs)
        assert new_runs == (1 if mine != theirs else 2)
