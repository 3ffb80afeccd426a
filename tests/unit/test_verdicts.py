"""The verdict arithmetic on its own: Holm's correction against statsmodels, intervals that
stay in range, two seeds needed to decide, the region of practical equivalence, and runs
that cannot act left out of the correction."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from harness.results import verdicts
from harness.results.verdicts import HELPED, HURT, SAME, holm, measure


@pytest.mark.parametrize("p", [[0.01, 0.04, 0.03, 0.2], [0.5], [0.001, 0.001, 0.9], [1.0, 0.0, 0.049]])
def test_holm_matches_statsmodels(p):
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert holm([None, *p, None]) == [None, *holm(p), None]


def test_holm_is_never_below_the_raw_p():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = list(rng.uniform(0, 1, rng.integers(1, 15)))
        assert all(a >= b for a, b in zip(holm(p), p))


def test_a_clear_paired_change_is_decided_and_its_interval_stays_in_range():
    child, parent = {0: 0.91, 1: 0.92}, {0: 0.11, 1: 0.115}
    change = measure(child, parent, bounds=(-1.0, 1.0))
    assert change.n == 2 and change.mean == pytest.approx(0.8025)
    assert -1 <= change.low <= change.mean <= change.high <= 1
    (verdict,) = verdicts.verdicts([change], [None])
    assert verdict.word == HELPED and verdict.p_holm == change.p < 0.05
    (worse,) = verdicts.verdicts([measure(parent, child, bounds=(-1.0, 1.0))], [None])
    assert worse.word == HURT


def test_one_seed_decides_nothing_but_its_interval_covers_the_images():
    correct = (
        {0: np.array([1, 1, 1, 1, 0, 1, 1, 1], dtype=bool)},
        {0: np.array([0, 0, 1, 0, 0, 1, 0, 0], dtype=bool)},
    )
    change = measure({0: 0.875}, {0: 0.25}, correct=correct, bounds=(-1.0, 1.0))
    assert change.n == 1 and change.covers == "validation images only (one seed)"
    assert change.low < change.mean < change.high
    (verdict,) = verdicts.verdicts([change], [None])
    assert verdict.word == "undecided (n=1)" and verdict.p_holm is None


def test_identical_runs_are_no_practical_difference_and_noise_is_undecided():
    same = measure({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6}, bounds=(-1.0, 1.0))
    assert (same.low, same.high, same.p) == (0.0, 0.0, 1.0)
    noisy = measure({0: 0.5, 1: 0.7}, {0: 0.6, 1: 0.6}, bounds=(-1.0, 1.0))
    words = [v.word for v in verdicts.verdicts([same, noisy], [None, None])]
    assert words == [SAME, "undecided (n=2)"]


def test_steps_that_cannot_act_are_said_so_and_left_out_of_the_correction():
    clear = measure({0: 0.9, 1: 0.91}, {0: 0.1, 1: 0.1}, bounds=(-1.0, 1.0))
    inert = measure({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})
    judged = verdicts.verdicts([clear, inert], [None, "early stopping's patience 5 >= 4 epochs: it cannot fire"])
    assert judged[1].word.startswith("cannot act at this budget (early stopping") and judged[1].p_holm is None
    assert judged[0].p_holm == clear.p  # one test in the family: nothing to correct


def test_loss_like_metrics_read_lower_as_better_and_unpaired_sides_still_compare():
    change = measure({0: 0.3, 1: 0.31}, {0: 0.9, 1: 0.91})
    (verdict,) = verdicts.verdicts([change], [None], higher_is_better=False)
    assert verdict.word == HELPED
    unpaired = measure({0: 0.8, 1: 0.82}, {5: 0.2, 6: 0.21})
    assert unpaired is not None and unpaired.n == 2
    assert measure({0: 0.8}, {5: 0.2}) is None  # one seed a side, none shared: nothing to say
