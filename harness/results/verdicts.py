"""Verdicts: what each step did to the ranking metric against its parent, decided rather than
left to the reader: `helped`, `hurt`, `no practical difference` (inside a region of practical
equivalence, the ROPE), `undecided (n=K)`, or `cannot act at this budget (why)`.

The change is measured on runs paired by seed (same seed: same split, same initial stream),
and its uncertainty has two parts, added:

- training randomness: the posterior of the mean paired difference over seeds, Student's t
  with n - 1 degrees of freedom (the Bayesian correlated t-test of Benavoli et al., JMLR
  2017, as baycomp implements it, with no correlation between seeds), or d0 + n - 1 where
  the table's other steps lend theirs (below); it needs two seeds a side;
- the sample of validation images: the images both runs of a seed classified
  (`val_correct.npy`, one byte an image), paired image by image, as the Bayesian bootstrap
  (Rubin 1981) of their mean difference, in its normal limit with the exact
  variance sum((d - mean)^2) / (N (N + 1)), so a read-only command does not resample
  10,000 images 4,000 times. With two seeds or more, d is the images' own difference: the
  two-way (seeds x images) random-effects estimate of the between-image variance,
  var(mean over seeds) - MS(seeds x images) / seeds, because the part of an image's
  difference that changes from seed to seed is already in the seed part (counting it twice
  made every interval wider than its data).

The seed part of one step rests on few seeds (Student's t with one degree of freedom puts
the 95% interval at +/-12.7 standard errors), but a table has a dozen steps whose
seed-to-seed spreads are alike: their sample variances are moderated together, the
empirical Bayes of limma (Smyth 2004, Statistical Applications in Genetics and Molecular
Biology 3:3, `squeezeVar`): a scaled inverse chi-square prior fitted to the other steps'
variances (`table_priors`; made cautious in `seed_prior`), each step's variance limma's
moderated (posterior) variance on d0 + n - 1 degrees of freedom. A step with fewer than
MIN_PRIOR_STEPS others gets no prior, nor a step whose spread the prior calls improbable
(OUTLIER_LEVEL), nor runs that never differ.

The interval is the 2.5th and 97.5th percentiles of their sum (t_plus_normal), clipped to
the metric's possible range; p is twice the smaller tail beyond zero; p (Holm) corrects it
across the steps of one table (Holm 1979; the same figures as statsmodels' multipletests, checked by
tests/unit/test_verdicts.py, without statsmodels' two seconds of import). A step is decided
`helped` or `hurt` when its Holm-corrected p is under 0.05 and its whole interval lies beyond
the ROPE on that side; `no practical difference` when its whole interval lies inside the
ROPE. What the interval does not cover: the choice of the split (data.seed), the test set,
and hardware nondeterminism beyond the seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Optional

import numpy as np

ROPE = 0.005  # +/- 0.5 percentage points of accuracy: smaller changes are no practical difference
LEVEL = 0.95  # the intervals shown
ALPHA = 0.05  # the family-wise error rate Holm's correction keeps across one table's steps
QUANTILES = 20_000  # of the t, for the sum's distribution: its probabilities are off by at most 1/20,000
DRAWS = 4000  # posterior draws, unpaired sides only: the ends move by about 0.001 between seeds of the draws
DRAW_SEED = 20241202  # fixed: the same runs give the same table
MIN_SEEDS = 2  # a verdict needs two seeds a side: one seed says nothing of training randomness
MIN_PRIOR_STEPS = 4  # fewer other steps than four lend nothing: with three, unlike spreads broke Holm's 5%
PRIOR_CONFIDENCE = 0.9  # the prior lends only the degrees of freedom the steps' spreads support at 90% confidence
OUTLIER_LEVEL = 0.2  # a step spreading in the top 20% of what the others predict keeps its own (they under-covered)
FUTILITY_CHANCE = 0.10  # --seeds auto stops a step under a 10% chance of a decision at the cap (2 seeds: the old reach)

HELPED, HURT, SAME = "helped", "hurt", "no practical difference"
CANNOT_ACT = "cannot act at this budget"


@dataclass(frozen=True)
class Change:
    """A step's measured change of the metric (child minus parent) with its interval and p."""

    mean: float
    low: float
    high: float
    p: float
    n: int  # seeds paired (or, unpaired, the smaller side's seeds)
    covers: str  # "seeds and validation images", "seeds", "validation images (one seed)"
    image_floor: float = 0.0  # half-width of the images' part alone: no number of seeds narrows it
    seed_sd: Optional[float] = None  # standard deviation of the per-seed changes (two seeds or more)
    prior_df: float = 0.0  # degrees of freedom the table's other steps lent seed_sd (table_priors)


@dataclass(frozen=True)
class SeedPrior:
    """What a table's steps say together of how much a step's change varies from seed to
    seed: a scaled inverse chi-square prior for each step's variance, `variance` its scale
    and `df` its degrees of freedom (limma's var.prior and df.prior)."""

    variance: float
    df: float

    def fits(self, variance: float, df: int) -> bool:
        """Whether a step's sample variance on `df` degrees of freedom is one the prior could
        give: not beyond the upper OUTLIER_LEVEL tail of the F(df, d0) it predicts for
        variance / scale. A step that spreads far more than the others keeps its own."""
        from scipy.special import fdtrc

        return float(fdtrc(df, self.df, variance / self.variance)) >= OUTLIER_LEVEL

    def moderated(self, variance: float, df: int) -> float:
        """A step's sample variance on `df` degrees of freedom, squeezed towards the prior."""
        return (self.df * self.variance + df * variance) / (self.df + df)


@dataclass(frozen=True)
class Verdict:
    """One step's verdict: its word, the change it rests on, the p corrected across the table."""

    word: str
    change: Optional[Change] = None
    p_holm: Optional[float] = None

    @property
    def decided(self) -> bool:
        return self.word in (HELPED, HURT, SAME)

    def settleable(self, max_seeds: int, *, rope: float = ROPE, family: int = 1) -> bool:
        """Whether seeds up to `max_seeds` could still decide an undecided step: its
        decision_chance is FUTILITY_CHANCE or more. Fewer than two seeds say nothing of the
        spread: such a step always gets another."""
        chance = self.decision_chance(max_seeds, rope=rope, family=family)
        return chance is None or chance >= FUTILITY_CHANCE

    def decision_chance(self, max_seeds: int, *, rope: float = ROPE, family: int = 1) -> Optional[float]:
        """The predictive power of the seeds still to come (Spiegelhalter, Freedman &
        Blackburn 1986, Controlled Clinical Trials 7:8): the chance that, at `max_seeds`, the
        step is decided, averaged over what its change may yet turn out to be. The seeds to
        come move the mean change, from the one measured, by the seeds' sd times
        sqrt(1/n - 1/max_seeds) (normal, at the measured sd); the images' part does not move
        it, the images are the same. At the cap the interval is the seed part shrunk to
        `max_seeds` plus the images' part, which no number of seeds narrows; decided is
        beyond the ROPE by that half-width and beyond zero by Holm's margin (its level shared
        among the `family` steps still undecided), or inside the ROPE. 0.0 at or past the cap;
        None below it where the seeds' spread is not known yet (fewer than two paired seeds)."""
        change = self.change
        if change is not None and change.n >= max_seeds:
            return 0.0
        if change is None or change.n < MIN_SEEDS or change.seed_sd is None:
            return None
        from scipy.special import ndtr, stdtrit

        z = NormalDist().inv_cdf(0.5 + LEVEL / 2)

        def half_at_cap(level: float) -> float:
            quantile = float(stdtrit(change.prior_df + max_seeds - 1, 0.5 + level / 2))
            seed_half = quantile * change.seed_sd / math.sqrt(max_seeds)
            return math.hypot(seed_half, change.image_floor * NormalDist().inv_cdf(0.5 + level / 2) / z)

        differ_beyond = max(rope + half_at_cap(LEVEL), half_at_cap(1 - ALPHA / max(family, 1)))
        same_within = rope - half_at_cap(LEVEL)
        move = change.seed_sd * math.sqrt(1 / change.n - 1 / max_seeds)
        if move == 0:
            return float(abs(change.mean) > differ_beyond or abs(change.mean) <= same_within)

        def below(x: float) -> float:  # the chance the mean change at the cap ends below x
            return float(ndtr((x - change.mean) / move))

        def above(x: float) -> float:  # as 1 - below(x), without rounding a small chance to nothing
            return float(ndtr((change.mean - x) / move))

        differ = below(-differ_beyond) + above(differ_beyond)
        same = max(below(same_within) - below(-same_within), 0.0) if same_within > 0 else 0.0
        return min(differ + same, 1.0)


Correctness = Callable[[str], Optional[np.ndarray]]  # run id -> its val_correct bits, or None


def measure(
    child: dict[int, float],
    parent: dict[int, float],
    *,
    correct: Optional[tuple[dict[int, np.ndarray], dict[int, np.ndarray]]] = None,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    prior: Optional[SeedPrior] = None,
) -> Optional[Change]:
    """The change child - parent of a metric given per seed on each side. Seeds both sides
    share are paired; without a shared seed the sides are compared unpaired. `correct`, the
    per-image correctness of each side's runs by seed (accuracy only), adds the uncertainty of
    the validation sample; `prior`, what the table's other steps lend (table_priors),
    moderates the paired seeds' spread. None when there is nothing to compare."""
    if not all(math.isfinite(v) for v in (*child.values(), *parent.values())):
        return None  # a diverged run's NaN is no measurement (nor the smallest p of a table)
    paired = sorted(set(child) & set(parent))
    spread, covers, noise_floor = _image_spread(paired, correct)
    differences = np.array([child[s] - parent[s] for s in paired])
    identical = not differences.any() and (spread is None or spread == noise_floor == 0.0)
    if len(paired) < MIN_SEEDS or identical:  # runs that never differ have no spread to squeeze
        prior = None
    if prior is not None and not prior.fits(float(np.var(differences, ddof=1)), len(paired) - 1):
        prior = None
    lent = prior.df if prior is not None else 0.0
    if paired:
        mean, n = float(differences.mean()), len(paired)
        scale = _seed_sd(differences, noise_floor, prior) / math.sqrt(n) if n >= MIN_SEEDS else 0.0
        low, high, p = t_plus_normal(mean, scale, lent + n - 1, spread or 0.0)
    elif len(child) >= MIN_SEEDS and len(parent) >= MIN_SEEDS:
        rng = np.random.default_rng(DRAW_SEED)
        a, b = np.array(list(child.values())), np.array(list(parent.values()))
        mean, n = float(a.mean() - b.mean()), min(len(a), len(b))
        draws = _mean_posterior(a, rng) - _mean_posterior(b, rng)
        tail = 100 * (1 - LEVEL) / 2
        low, high = (float(v) for v in np.percentile(draws, [tail, 100 - tail]))
        p = min(1.0, max(2 * min(float(np.mean(draws <= 0)), float(np.mean(draws >= 0))), 1 / DRAWS))
    else:
        return None
    if n < MIN_SEEDS:
        covers = "validation images only (one seed)" if spread is not None else "nothing (one seed)"
    low, high = max(low, bounds[0]), min(high, bounds[1])
    floor = NormalDist().inv_cdf(0.5 + LEVEL / 2) * spread if spread is not None else 0.0
    seed_sd = _seed_sd(differences, noise_floor, prior) if len(paired) >= MIN_SEEDS else None
    return Change(
        mean, min(low, mean), max(high, mean), p, n, covers, image_floor=floor, seed_sd=seed_sd, prior_df=lent
    )


def _seed_sd(values: np.ndarray, noise_floor: float = 0.0, prior: Optional[SeedPrior] = None) -> float:
    """The standard deviation of per-seed values, squeezed towards the table's `prior`;
    where they tie exactly, what the images' own seed-to-seed noise puts into each
    (`noise_floor`, a variance): two seeds that tie by chance do not make training randomness
    vanish. (Only at a tie: raising every small spread to the floor would widen intervals
    whose t quantile already allows for it.)"""
    variance = float(np.var(values, ddof=1))
    variance = variance if variance > 0 else noise_floor
    return math.sqrt(prior.moderated(variance, len(values) - 1) if prior is not None else variance)


def _mean_posterior(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """DRAWS posterior draws of the mean of `values`: mean + sd / sqrt(n) * t(n - 1) (two or
    more values; identical values give the mean itself)."""
    n = len(values)
    return float(values.mean()) + _seed_sd(values) / math.sqrt(n) * rng.standard_t(n - 1, DRAWS)


def t_plus_normal(mean: float, scale: float, df: float, spread: float) -> tuple[float, float, float]:
    """(low, high, p) of mean + scale * t(df) + normal(0, spread): the LEVEL interval, and
    twice the smaller tail beyond zero. The sum has no closed form; its distribution
    function is the normal's averaged over QUANTILES evenly spaced quantiles of the t (a
    midpoint rule in probability, off by at most 1 / QUANTILES: a p of 0.003 by at most
    3%, in practice far less), deterministic, unlike posterior draws."""
    from scipy.optimize import brentq
    from scipy.special import ndtr, ndtri, stdtr, stdtrit

    tail = (1 - LEVEL) / 2
    if scale == 0 and spread == 0:
        return mean, mean, 1.0 if mean == 0 else 0.0
    if spread == 0:
        half = scale * float(stdtrit(df, 1 - tail))
        return mean - half, mean + half, min(1.0, 2 * float(stdtr(df, -abs(mean) / scale)))
    if scale == 0:
        half = spread * float(ndtri(1 - tail))
        return mean - half, mean + half, min(1.0, 2 * float(ndtr(-abs(mean) / spread)))
    grid = scale * stdtrit(df, (np.arange(QUANTILES) + 0.5) / QUANTILES)  # centred: the mean is added back

    def below(x: float) -> float:
        return float(np.mean(ndtr((x - grid) / spread)))

    reach, tolerance = (float(grid[0]) - 10 * spread, float(grid[-1]) + 10 * spread), 1e-6 * math.hypot(scale, spread)
    low = brentq(lambda x: below(x) - tail, *reach, xtol=tolerance)
    high = brentq(lambda x: below(x) - (1 - tail), *reach, xtol=tolerance)
    at_zero = below(-mean)
    return mean + low, mean + high, min(1.0, 2 * min(at_zero, 1 - at_zero))


def table_priors(spreads: Sequence[np.ndarray]) -> list[Optional[SeedPrior]]:
    """Each step's prior, fitted to the other steps' spreads only (seed_prior): a step's own
    seeds are then counted once, in its own variance, and the F test of `SeedPrior.fits` is
    the exact predictive check. limma fits all genes at once, which across thousands is the
    same; across a dozen steps it let a step count its seeds twice (7-12% of simulated null
    tables of two or three steps called one helped or hurt)."""
    return [seed_prior([*spreads[:i], *spreads[i + 1 :]]) for i in range(len(spreads))]


def seed_prior(spreads: Sequence[np.ndarray]) -> Optional[SeedPrior]:
    """The prior some steps lend another's seed spread, from each step's paired per-seed
    changes (`spreads`, one array a step; those of fewer than two seeds, or that never
    differ, add nothing): fit_prior at PRIOR_CONFIDENCE, limma's fitFDist made cautious
    (its point estimate of d0 trusts a dozen steps of one or two degrees of freedom each too
    far: docs/statistics.md). None with fewer than MIN_PRIOR_STEPS spreads."""
    measured = [(float(np.var(v, ddof=1)), len(v) - 1) for v in spreads if len(v) >= MIN_SEEDS]
    measured = [(variance, df) for variance, df in measured if 0 < variance < math.inf]
    if len(measured) < MIN_PRIOR_STEPS:
        return None
    tiny = 1e-5 * float(np.median([variance for variance, _ in measured]))  # limma's guard: a tie is no spread
    usable = [(variance, df) for variance, df in measured if variance > tiny]
    if len(usable) < MIN_PRIOR_STEPS:
        return None
    return fit_prior([v for v, _ in usable], [d for _, d in usable], confidence=PRIOR_CONFIDENCE)


def fit_prior(variances: Sequence[float], dfs: Sequence[float], *, confidence: Optional[float]) -> Optional[SeedPrior]:
    """The scaled inverse chi-square prior of sample variances (each on its degrees of
    freedom), by limma's fitFDist: the mean and spread of the log variances, less what
    chance puts into them. `confidence` None gives limma's point estimate of the degrees of
    freedom; a level, those at that one-sided bound of the log variances' spread (more
    spread, fewer degrees of freedom). Capped at the sum of `dfs`."""
    from scipy.special import chdtri, digamma, polygamma

    sizes = np.asarray(dfs, dtype=float)
    logs = np.log(np.asarray(variances, dtype=float)) - digamma(sizes / 2) + np.log(sizes / 2)
    centre, count = float(logs.mean()), len(logs)
    spread = float(np.var(logs, ddof=1))
    if confidence is not None:
        spread = (count - 1) * spread / float(chdtri(count - 1, confidence))
    excess = spread - float(np.mean(polygamma(1, sizes / 2)))
    cap = float(sizes.sum())
    prior_df = min(2 * _trigamma_inverse(excess), cap) if excess > 0 else cap
    scale = math.exp(centre + digamma(prior_df / 2) - math.log(prior_df / 2)) if prior_df > 0 else 0.0
    if not (0 < prior_df < math.inf and 0 < scale < math.inf):
        return None  # variances at the edge of the floats: nothing sound to lend
    return SeedPrior(scale, prior_df)


def _trigamma_inverse(value: float) -> float:
    """y with trigamma(y) = value, by limma's Newton iteration (trigammaInverse)."""
    from scipy.special import polygamma

    if value > 1e7:
        return 1 / math.sqrt(value)
    if value < 1e-6:
        return 1 / value
    y = 0.5 + 1 / value
    for _ in range(50):
        trigamma = float(polygamma(1, y))
        step = trigamma * (1 - trigamma / value) / float(polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def _image_spread(paired: Sequence[int], correct) -> tuple[Optional[float], str, float]:
    """(the standard deviation of the validation sample's part of the mean paired
    difference, what the interval covers, the variance the images' seed-to-seed noise puts
    into one seed's difference: MS(seeds x images) / images). The spread is None where
    per-image correctness is missing on either side for a paired seed, or the seeds were
    validated on different numbers of images, or on fewer than two."""
    if not paired or correct is None:
        return None, "seeds", 0.0
    child, parent = correct
    rows = [(child.get(s), parent.get(s)) for s in paired]
    if any(a is None or b is None or len(a) != len(b) for a, b in rows) or len({len(a) for a, _ in rows}) > 1:
        return None, "seeds", 0.0
    differences = np.array([a.astype(float) - b.astype(float) for a, b in rows])  # seeds x images
    seeds, count = differences.shape
    if count < 2:
        return None, "seeds", 0.0
    per_image = differences.mean(axis=0)
    between, noise_floor = float(np.var(per_image, ddof=1)), 0.0
    if seeds >= MIN_SEEDS:
        residual = differences - per_image - differences.mean(axis=1, keepdims=True) + differences.mean()
        interaction = float(np.sum(residual**2)) / ((seeds - 1) * (count - 1))
        between, noise_floor = max(between - interaction / seeds, 0.0), interaction / count
    return math.sqrt(between * (count - 1) / (count * (count + 1))), "seeds and validation images", noise_floor


def undecided_family(judged: Sequence[Verdict]) -> int:
    """How many steps of a table share Holm's level among those not yet helped or hurt:
    the tested ones (they have a corrected p) less those already decided either way."""
    return sum(1 for v in judged if v.p_holm is not None and v.word not in (HELPED, HURT)) or 1


def holm(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjustment of the p-values given (None stays None): the k-th smallest
    of m is multiplied by m - k + 1, then made monotone and capped at 1."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[Optional[float]] = [None] * len(p_values)
    running, m = 0.0, len(present)
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def decide(change: Optional[Change], p_holm: Optional[float], *, rope: float, higher_is_better: bool) -> str:
    """The word for one measured step, given its Holm-corrected p."""
    if change is None:
        return "undecided (n=0)"
    if change.n < MIN_SEEDS or p_holm is None:
        return f"undecided (n={change.n})"
    better_low, better_high = (change.low, change.high) if higher_is_better else (-change.high, -change.low)
    if p_holm < ALPHA and better_low > rope:
        return HELPED
    if p_holm < ALPHA and better_high < -rope:
        return HURT
    if -rope <= change.low and change.high <= rope:
        return SAME
    return f"undecided (n={change.n})"


def verdicts(
    changes: Sequence[Optional[Change]],
    cannot_act: Sequence[Optional[str]],
    *,
    rope: float = ROPE,
    higher_is_better: bool = True,
) -> list[Verdict]:
    """One verdict per step of a table: the steps that cannot act are said so (and left out
    of the correction), the others decided on their Holm-corrected p."""
    tested = [
        c.p if c is not None and c.n >= MIN_SEEDS and reason is None else None for c, reason in zip(changes, cannot_act)
    ]
    corrected = holm(tested)
    out = []
    for change, reason, p_holm in zip(changes, cannot_act, corrected):
        if reason is not None:
            out.append(Verdict(f"{CANNOT_ACT} ({reason})", change))
            continue
        out.append(Verdict(decide(change, p_holm, rope=rope, higher_is_better=higher_is_better), change, p_holm))
    return out
