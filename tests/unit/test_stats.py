"""Seed statistics against scipy.stats, the library they stand in for (the read-only commands
cannot afford its import): the Student-t interval of a mean, Welch's test and its interval."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from harness.results.stats import difference_interval, format_summary, seed_statistics, summarize, welch_p

A = [0.61, 0.58, 0.66, 0.63]
B = [0.52, 0.55, 0.50]


def test_summary_matches_scipy_student_t():
    summary = summarize(A)
    low, high = scipy_stats.t.interval(0.95, len(A) - 1, loc=sum(A) / len(A), scale=scipy_stats.sem(A))
    assert (summary.n, summary.ci_low, summary.ci_high) == (4, pytest.approx(low), pytest.approx(high))
    assert summary.std == pytest.approx(scipy_stats.tstd(A))


def test_one_value_has_no_spread_and_no_values_is_an_error():
    one = summarize([0.7])
    assert (one.mean, one.std, one.ci_low, one.ci_high) == (0.7, 0.0, 0.7, 0.7)
    with pytest.raises(ValueError):
        summarize([])


def test_welch_matches_scipy_and_needs_two_values_a_side():
    assert welch_p(A, B) == pytest.approx(scipy_stats.ttest_ind(A, B, equal_var=False).pvalue)
    result = scipy_stats.ttest_ind(A, B, equal_var=False)
    low, high = result.confidence_interval(0.95)
    assert difference_interval(A, B) == (pytest.approx(low), pytest.approx(high))
    assert welch_p(A, [0.5]) is None and difference_interval([0.5], B) is None
    assert welch_p([0.5, 0.5], [0.5, 0.5]) is None  # both constant: no test is possible


def test_a_group_logs_each_metric_with_its_spread():
    logged = seed_statistics(
        [{"best_val_accuracy": 0.5, "epochs_run": 3, "val_f1_3": 0.1}, {"best_val_accuracy": 0.7, "val_f1_3": 0.2}]
    )
    assert set(logged) == {f"best_val_accuracy{s}" for s in ("", "_std", "_n", "_ci_low", "_ci_high")}  # chosen only
    assert logged["best_val_accuracy"] == pytest.approx(0.6) and logged["best_val_accuracy_n"] == 2
    assert format_summary(logged, "best_val_accuracy") == "0.6000 +/- 0.1414 (n=2)"
    assert format_summary({"x": 0.25}, "x") == "0.2500 (n=1)"
    assert math.isnan(summarize([float("nan"), 1.0]).mean)
