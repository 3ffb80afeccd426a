"""Seed statistics: mean, sample standard deviation, n, a 95% Student-t confidence interval,
and Welch's t-test between two groups. One home for them, used by the runner, the
comparison tables and the benchmarks. Student's t comes from scipy.special (stdtr, stdtrit):
the same functions scipy.stats.t calls, without the second it takes to import scipy.stats,
which the read-only commands cannot afford."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

CONFIDENCE = 0.95  # the intervals the tables and charts show


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample (n-1); 0.0 for one value
    n: int
    ci_low: float  # Student t, CONFIDENCE; equal to the mean for one value
    ci_high: float


def summarize(values: Sequence[float]) -> Summary:
    """Mean, std (n-1), n and the 95% Student-t interval of the mean of `values` (all NaN
    where a value is NaN)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to summarize")
    if any(math.isnan(v) for v in values):  # statistics.stdev raises on NaN (Python 3.11)
        return Summary(math.nan, math.nan, len(values), math.nan, math.nan)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Summary(mean, 0.0, len(values), mean, mean)
    std = statistics.stdev(values)
    half = t_quantile(len(values) - 1) * std / math.sqrt(len(values))
    return Summary(mean, std, len(values), mean - half, mean + half)


def t_quantile(degrees_of_freedom: float) -> float:
    """The two-sided CONFIDENCE quantile of Student's t."""
    from scipy.special import stdtrit

    return float(stdtrit(degrees_of_freedom, 0.5 + CONFIDENCE / 2))


def _welch(a: Sequence[float], b: Sequence[float]) -> Optional[tuple[float, float, float]]:
    """(mean(a) - mean(b), its standard error, Welch-Satterthwaite degrees of freedom)."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return diff, 0.0, math.nan
    dof = (va + vb) ** 2 / ((va**2) / (len(a) - 1) + (vb**2) / (len(b) - 1))
    return diff, math.sqrt(va + vb), dof


def difference_interval(a: Sequence[float], b: Sequence[float]) -> Optional[tuple[float, float]]:
    """The 95% Welch interval of mean(a) - mean(b), where both have two or more values."""
    welch = _welch(a, b)
    if welch is None:
        return None
    diff, se, dof = welch
    if se == 0:
        return diff, diff
    half = t_quantile(dof) * se
    return diff - half, diff + half


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Welch's two-sided t-test p-value, where both sides have two or more values (None
    where both are constant: no test is possible)."""
    welch = _welch(a, b)
    if welch is None or welch[1] == 0:
        return None
    from scipy.special import stdtr

    diff, se, dof = welch
    return float(2 * stdtr(dof, -abs(diff / se)))


def format_summary(stats: dict[str, float], key: str) -> str:
    """A group's metric as one reads it: '0.5764 +/- 0.0123 (n=3)', or '0.5764 (n=1)'."""
    n = int(stats.get(f"{key}_n", 1))
    mean = stats.get(key, float("nan"))
    if n < 2:
        return f"{mean:.4f} (n={n})"
    return f"{mean:.4f} +/- {stats.get(f'{key}_std', 0.0):.4f} (n={n})"


SPREAD_FOR = (  # the metrics a seed group logs with their spread (_std, _n, _ci_low, _ci_high)
    "best_val_accuracy",  # the ranking metric
    "best_val_loss",
    "val_macro_f1",
    "train_val_gap",
    "epochs_run",
    "train_seconds",
)
MEAN_ONLY = ("param_count", "images_per_second")  # the same for every seed, or a figure of speed


def seed_statistics(runs: list[dict[str, float]]) -> dict[str, float]:
    """A group's metrics: the chosen ones (SPREAD_FOR) present in all its runs under their own
    names (the mean, so one column of MLflow's runs table ranks single runs and groups
    together) with _std (n-1), _n and the 95% interval _ci_low, _ci_high beside each; a few
    others as means (MEAN_ONLY). The rest (per-class F1 ...) stay on the seed runs: a group
    logs about 30 metrics, not one of each kind for every metric."""
    keys = set.intersection(*(set(m) for m in runs)) if runs else set()
    stats: dict[str, float] = {}
    for key in sorted(keys & set(SPREAD_FOR)):
        summary = summarize([m[key] for m in runs])
        stats[key] = summary.mean
        stats[f"{key}_std"] = summary.std
        stats[f"{key}_n"] = float(summary.n)
        stats[f"{key}_ci_low"] = summary.ci_low
        stats[f"{key}_ci_high"] = summary.ci_high
    for key in sorted(keys & set(MEAN_ONLY)):
        stats[key] = summarize([m[key] for m in runs]).mean
    return stats
