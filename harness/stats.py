"""Seed statistics: mean, sample standard deviation, n, a 95% Student-t confidence interval,
and Welch's t-test between two groups (scipy). One home for them, used by the runner, the
comparison tables and the benchmarks."""

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
    """Mean, std (n-1), n and the 95% Student-t interval of the mean of `values`."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to summarize")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Summary(mean, 0.0, len(values), mean, mean)
    std = statistics.stdev(values)
    half = t_quantile(len(values) - 1) * std / math.sqrt(len(values))
    return Summary(mean, std, len(values), mean - half, mean + half)


def t_quantile(degrees_of_freedom: float) -> float:
    """The two-sided CONFIDENCE quantile of Student's t."""
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, degrees_of_freedom))


def difference_interval(a: Sequence[float], b: Sequence[float]) -> Optional[tuple[float, float]]:
    """The 95% Welch interval of mean(a) - mean(b), where both have two or more values."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if se == 0:
        return diff, diff
    dof = (va + vb) ** 2 / ((va**2) / (len(a) - 1) + (vb**2) / (len(b) - 1))
    half = t_quantile(dof) * se
    return diff - half, diff + half


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Welch's t-test p-value (scipy), where both sides have two or more values."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import ttest_ind

    p = float(ttest_ind(list(a), list(b), equal_var=False).pvalue)
    return None if math.isnan(p) else p


def format_summary(stats: dict[str, float], key: str) -> str:
    """A group's metric as one reads it: '0.5764 +/- 0.0123 (n=3)', or '0.5764 (n=1)'."""
    n = int(stats.get(f"{key}_n", 1))
    mean = stats.get(key, float("nan"))
    if n < 2:
        return f"{mean:.4f} (n={n})"
    return f"{mean:.4f} +/- {stats.get(f'{key}_std', 0.0):.4f} (n={n})"


def seed_statistics(runs: list[dict[str, float]]) -> dict[str, float]:
    """A group's metrics: every final metric present in all runs under its own name (the
    mean, so one column of MLflow's runs table ranks single runs and groups together), with
    _std (n-1), _n and the 95% interval _ci_low, _ci_high beside it."""
    keys = set.intersection(*(set(m) for m in runs)) if runs else set()
    stats: dict[str, float] = {}
    for key in sorted(keys):
        summary = summarize([m[key] for m in runs])
        stats[key] = summary.mean
        stats[f"{key}_std"] = summary.std
        stats[f"{key}_n"] = float(summary.n)
        stats[f"{key}_ci_low"] = summary.ci_low
        stats[f"{key}_ci_high"] = summary.ci_high
    return stats
