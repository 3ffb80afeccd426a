"""The verdict arithmetic on its own: Holm's correction against statsmodels, intervals that
stay in range, two seeds needed to decide, the region of practical equivalence, and runs
that cannot act left out of the correction."""

from __future__ import annotations

from dataclasses import replace

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


def _simulated_change(rng, *, images: int, seeds: int, effect: float) -> tuple[float, object]:
    """One experiment drawn from a known world: each image has its own chance of being
    right under the parent and under the child (the child's `effect` better on average,
    image by image unevenly), each run a seed's shift of every chance; returns (the true
    change in that world, what measure() makes of the runs)."""

    def world(count):
        parent = rng.uniform(0.2, 0.9, count)
        return parent, np.clip(parent + effect + rng.normal(0.0, 0.15, count), 0.0, 1.0)

    truth = float(np.mean(np.subtract(*world(200_000)[::-1])))
    parent_chance, child_chance = world(images)
    child_runs, parent_runs, child_bits, parent_bits = {}, {}, {}, {}
    for seed in range(seeds):
        for chance, runs, bits in ((child_chance, child_runs, child_bits), (parent_chance, parent_runs, parent_bits)):
            right = rng.uniform(size=images) < np.clip(chance + rng.normal(0.0, 0.02), 0.0, 1.0)
            runs[seed], bits[seed] = float(right.mean()), right
    return truth, measure(child_runs, parent_runs, correct=(child_bits, parent_bits), bounds=(-1.0, 1.0))


@pytest.mark.parametrize("seeds", [2, 4])
def test_the_interval_covers_the_true_change_about_as_often_as_it_says(seeds):
    """Over fresh images and fresh seeds, the 95% interval holds the change of the whole
    world about 95% of the time: not less (it would claim too much), and not near always
    (counting the seed-to-seed noise of each image twice made it too wide to decide)."""
    rng = np.random.default_rng(7)
    hits = []
    for _ in range(300):
        truth, change = _simulated_change(rng, images=400, seeds=seeds, effect=0.02)
        hits.append(change.low <= truth <= change.high)
    assert 0.90 <= np.mean(hits) <= 0.985


def test_more_seeds_are_not_wanted_where_the_images_alone_leave_the_step_undecided():
    """A change of 0.2 pp measured on few images (their part alone +/-6 pp): however many
    seeds, its interval stays wider than the change; on many images, with seeds that agree,
    it may yet prove no practical difference."""
    few_images = verdicts.Change(0.002, -0.07, 0.074, 0.9, 3, "seeds and validation images", 0.06, 0.01)
    (verdict,) = verdicts.verdicts([few_images], [None])
    assert verdict.word == "undecided (n=3)" and not verdict.settleable(6)
    many_images = replace(few_images, image_floor=0.001, seed_sd=0.002)
    assert verdicts.Verdict("undecided (n=3)", many_images).settleable(6)  # may yet be no practical difference
    large = verdicts.Verdict("undecided (n=3)", replace(few_images, mean=0.065))
    assert large.settleable(6)  # a change just short of the floor may clear it once the seeds' part shrinks
    one_seed = verdicts.Verdict("undecided (n=1)", replace(few_images, n=1, seed_sd=None))
    assert one_seed.settleable(6)  # a single seed says nothing of training randomness yet
    assert not verdict.settleable(3)  # at the cap: nothing more to give
    measured = _simulated_change(np.random.default_rng(3), images=150, seeds=2, effect=0.0)[1]
    assert 0.03 < measured.image_floor < 0.12 and measured.seed_sd > 0  # what measure() gives the rule


def test_seeds_stop_where_their_spread_leaves_the_step_undecided_at_the_cap():
    """Two seeds 2.8 pp apart around a change of -0.9 pp: six seeds would still leave some
    +/-3 pp, so more are not spent; the same change with seeds that agree gets them."""
    spread = verdicts.Change(-0.009, -0.25, 0.24, 0.7, 2, "seeds and validation images", 0.0, 0.028)
    assert not verdicts.Verdict("undecided (n=2)", spread).settleable(6)
    assert verdicts.Verdict("undecided (n=2)", replace(spread, seed_sd=0.003)).settleable(6)


def test_a_seed_that_can_barely_move_the_mean_is_not_spent():
    """+2.8 pp with seeds 3 pp apart, where six seeds need about +3.7 pp: after two seeds the
    four to come may well move the mean that far (worth a third), after five the sixth moves
    it by a sixth of the spread at most in all likelihood, so it is not spent; the chance
    said is a probability that shrinks as the cap nears."""
    change = verdicts.Change(0.028, -0.01, 0.07, 0.1, 2, "seeds", 0.0, 0.03)
    early = verdicts.Verdict("undecided (n=2)", change)
    late = verdicts.Verdict("undecided (n=5)", replace(change, n=5))
    assert early.settleable(6) and not late.settleable(6)
    assert 0 < late.decision_chance(6) < verdicts.FUTILITY_CHANCE <= early.decision_chance(6) < 1
    assert late.decision_chance(5) == 0.0 and early.decision_chance(6, family=12) < early.decision_chance(6)


def test_a_remote_chance_of_a_decision_reads_under_one_percent_not_nothing():
    """-0.5 pp with seeds 7.4 pp apart, three seeds of four, Holm's level shared by three (a
    digits study's adam step): the chance is about 1e-16, which one minus a probability near
    one rounds to nothing; the stop message says <1%, not 0%."""
    from harness.runs.adaptive import why_stopped

    change = verdicts.Change(-0.0046, -0.19, 0.18, 0.92, 3, "seeds and validation images", 0.0109, 0.0743)
    step = verdicts.Verdict("undecided (n=3)", change)
    assert 0 < step.decision_chance(4, family=3) < 1e-6
    assert "has a <1% chance of a decision at 4 seeds" in why_stopped(step, 3, 4, family=3)


def test_a_step_that_would_pass_alone_stops_when_holm_shares_the_level_among_many():
    """+4 pp with seeds 3 pp apart: at six seeds it would clear the ROPE and zero at 95%,
    but not at the 99.6% Holm asks of the first of twelve steps still undecided."""
    change = verdicts.Change(0.04, -0.01, 0.09, 0.06, 3, "seeds and validation images", 0.004, 0.03)
    judged = verdicts.Verdict("undecided (n=3)", change)
    assert judged.settleable(6, family=1) and not judged.settleable(6, family=12)
    table = [
        verdicts.Verdict("undecided (n=3)", change, 0.2),
        verdicts.Verdict(SAME, change, 0.9),
        verdicts.Verdict(HELPED, change, 0.01),
        verdicts.Verdict("cannot act at this budget (x)", change),
    ]
    assert verdicts.undecided_family(table) == 2  # helped leaves the family; cannot act was never in it


def test_two_seeds_that_tie_keep_the_images_noise_as_their_spread():
    """Two seeds whose changes tie exactly (+1 image of 4 each, on different images) still
    carry each image's seed-to-seed noise: no zero-width seed part, no zero spread."""
    child = {0: np.array([1, 1, 0, 0], dtype=bool), 1: np.array([0, 1, 1, 0], dtype=bool)}
    parent = {0: np.array([0, 1, 0, 0], dtype=bool), 1: np.array([0, 0, 1, 0], dtype=bool)}
    change = measure({0: 0.5, 1: 0.5}, {0: 0.25, 1: 0.25}, correct=(child, parent), bounds=(-1.0, 1.0))
    assert change.seed_sd > 0 and change.low < change.mean < change.high


def test_what_cannot_be_measured_is_not():
    assert measure({0: float("nan"), 1: 0.5}, {0: 0.4, 1: 0.4}) is None  # a diverged run
    uneven = ({0: np.ones(5, bool), 1: np.ones(4, bool)}, {0: np.zeros(5, bool), 1: np.zeros(4, bool)})
    change = measure({0: 1.0, 1: 1.0}, {0: 0.0, 1: 0.1}, correct=uneven, bounds=(-1.0, 1.0))
    assert change.covers == "seeds" and change.image_floor == 0.0  # images that differ by seed are not paired


# The spreads of the CIFAR-10 bench's steps at 3 epochs (sd of a step's change over six
# seeds, in accuracy): unlike enough that pooling them naively claims too much.
BENCH_SPREADS = np.array([1.4, 1.4, 2.6, 2.9, 3.6, 1.2, 2.5, 1.7, 3.0, 2.4, 3.3, 2.8]) / 100


def _table(rng, spreads, seeds: int, effects=None) -> list:
    """Per-seed changes of a table's steps (no images: the seeds' part alone)."""
    effects = np.zeros(len(spreads)) if effects is None else effects
    return [effect + rng.normal(0.0, sd, seeds) for effect, sd in zip(effects, spreads)]


def _measured(changes, priors) -> list:
    """Each step's change measured with its prior (`priors`: one a step, or None for none)."""
    priors = priors if priors is not None else [None] * len(changes)
    return [
        measure({s: 0.5 + v for s, v in enumerate(c)}, {s: 0.5 for s in range(len(c))}, prior=prior)
        for c, prior in zip(changes, priors)
    ]


def test_a_table_lends_its_steps_degrees_of_freedom_and_narrows_two_seed_intervals():
    """Twelve steps of two seeds each, alike in spread: each step's interval borrows the
    other steps' degrees of freedom (Student's t with one degree of freedom is +/-12.7
    standard errors), so two seeds say something. A step's prior is fitted without it; a
    table of fewer than five steps lends nothing."""
    rng = np.random.default_rng(11)
    changes = _table(rng, np.full(12, 0.02), seeds=2)
    priors = verdicts.table_priors(changes)
    assert all(p is not None and 0.5 < p.df <= 11 and 0.0001 < p.variance < 0.002 for p in priors)
    assert priors[0] == verdicts.seed_prior(changes[1:])  # the step's own seeds are not in its prior
    lent, alone = _measured(changes, priors), _measured(changes, None)
    kept_own = [a for a in lent if a.prior_df == 0.0]  # spread in the top OUTLIER_LEVEL of what the others predict
    assert len(kept_own) <= 4 and all(a.prior_df in (0.0, p.df) for a, p in zip(lent, priors))
    assert np.median([a.high - a.low for a in lent]) < 0.5 * np.median([a.high - a.low for a in alone])
    assert verdicts.table_priors(changes[: verdicts.MIN_PRIOR_STEPS]) == [None] * verdicts.MIN_PRIOR_STEPS


def test_moderated_intervals_cover_the_truth_and_null_tables_rarely_decide():
    """Over simulated tables whose steps spread like the bench's, the lent intervals still
    cover each step's true change about 95% of the time (on average over the steps: the
    one that spreads most, less), and of tables where no step does anything few call one
    helped or hurt (Holm's 5%; the cautious prior gives 2-3%). limma's point estimate of the
    prior's degrees of freedom (PRIOR_CONFIDENCE 0.5, roughly) let 5.7-6.7% of them through
    at three and four seeds, and fitted to every step at once, 8-9.5%."""
    rng = np.random.default_rng(12)
    hits = []
    for round_ in range(200):
        effects = rng.normal(0.0, 0.03, len(BENCH_SPREADS))
        changes = _table(rng, BENCH_SPREADS, 2 + round_ % 4, effects)
        measured = _measured(changes, verdicts.table_priors(changes))
        hits += [c.low <= e <= c.high for c, e in zip(measured, effects)]
    assert 0.92 <= np.mean(hits) <= 0.975
    false_tables = 0
    for round_ in range(600):
        null = _table(rng, BENCH_SPREADS, 3 + round_ % 2)
        words = [v.word for v in verdicts.verdicts(_measured(null, verdicts.table_priors(null)), [None] * len(null))]
        false_tables += any(w in (HELPED, HURT) for w in words)
    assert false_tables / 600 <= 0.05


def test_a_step_that_spreads_far_more_than_the_table_keeps_its_own_spread():
    changes = _table(np.random.default_rng(13), np.r_[np.full(11, 0.004), 0.001], seeds=4)
    changes.append(np.array([0.3, -0.2, 0.25, -0.3]))
    priors = verdicts.table_priors(changes)
    measured = _measured(changes, priors)
    assert measured[0].prior_df == priors[0].df > 0 and measured[-1].prior_df == 0.0
    assert measured[-1].seed_sd == pytest.approx(np.std(changes[-1], ddof=1))


def test_identical_runs_stay_identical_with_a_prior():
    prior = verdicts.SeedPrior(variance=0.0004, df=6.0)
    same = measure({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6}, bounds=(-1.0, 1.0), prior=prior)
    assert (same.low, same.high, same.p, same.prior_df) == (0.0, 0.0, 1.0, 0.0)


@pytest.mark.parametrize("scale, spread", [(0.01, 0.0), (0.0, 0.01), (0.01, 0.01), (0.03, 0.002)])
def test_the_sum_of_t_and_normal_matches_its_draws(scale, spread):
    """t_plus_normal's interval and p against a million draws of the same sum."""
    rng = np.random.default_rng(14)
    draws = 0.02 + scale * rng.standard_t(3.5, 1_000_000) + rng.normal(0.0, spread, 1_000_000)
    low, high, p = verdicts.t_plus_normal(0.02, scale, 3.5, spread)
    assert (low, high) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])), abs=3e-4)
    assert p == pytest.approx(2 * np.mean(draws <= 0), rel=0.05, abs=2e-4)


def test_the_prior_recovers_the_spread_it_was_drawn_from():
    """Four thousand steps whose true variances come from a scaled inverse chi-square with
    d0 = 8 and scale 0.0004, each seen over three seeds: the fit finds them again (with so
    many steps the 90% bound is close to the estimate)."""
    rng = np.random.default_rng(15)
    true_variances = 0.0004 * 8 / rng.chisquare(8, 4000)
    prior = verdicts.seed_prior([rng.normal(0.0, np.sqrt(v), 3) for v in true_variances])
    assert prior.df == pytest.approx(8, rel=0.2) and prior.variance == pytest.approx(0.0004, rel=0.1)


def test_the_fit_is_limmas_on_limmas_own_example():
    """squeezeVar(c(0.5, 1.3, 7.8), df=3) in limma (the figures InMoose's port tests against):
    df.prior 2.830777, var.prior 1.676927, var.post 1.071385, 1.482994, 4.827317."""
    prior = verdicts.fit_prior([0.5, 1.3, 7.8], [3, 3, 3], confidence=None)
    assert prior.df == pytest.approx(2.830777, abs=1e-6) and prior.variance == pytest.approx(1.676927, abs=1e-6)
    posterior = [prior.moderated(v, 3) for v in (0.5, 1.3, 7.8)]
    assert posterior == pytest.approx([1.071385, 1.482994, 4.827317], abs=1e-6)
    cautious = verdicts.fit_prior([0.5, 1.3, 7.8], [3, 3, 3], confidence=0.9)
    assert 0 < cautious.df < prior.df  # the bound lends fewer degrees of freedom, never more


def test_extreme_values_give_sound_figures_or_no_prior():
    low, high, p = verdicts.t_plus_normal(1e300, 1e298, 3.0, 1e298)
    assert low < 1e300 < high and p < 1e-3
    low, high, p = verdicts.t_plus_normal(1e-12, 1e-12, 3.0, 1e-12)
    assert -1e-11 < low < 1e-12 < high < 1e-11 and 0.3 < p <= 1
    for tiny in ([1e-320, 3e-320, 2e-320, 5e-321], [5e-324] * 4):
        prior = verdicts.fit_prior(tiny, [1, 1, 1, 1], confidence=0.9)
        assert prior is None or (0 < prior.variance < np.inf and prior.fits(1e-320, 1) in (True, False))
    assert verdicts.seed_prior([np.array([0.1, 0.1])] * 6) is None  # ties are no spread to lend
