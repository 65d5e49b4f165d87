"""Seed statistics against published values: Student's t quantiles, Welch's test."""

import math
import statistics

import pytest

from labbench.core.sweepstats import (
    NO_SPREAD,
    group_test,
    incomplete_beta,
    one_sample_test,
    spread,
    spread_from_moments,
    t_cdf,
    t_quantile,
    welch_test,
)


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.7062),
        (0.975, 2, 4.3027),
        (0.975, 4, 2.7764),
        (0.975, 30, 2.0423),
        (0.95, 10, 1.8125),
        (0.995, 3, 5.8409),
        (0.9875, 1, 25.4517),  # 95 % two-sided, Bonferroni over 2 comparisons
    ],
)
def test_t_quantile_matches_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-5)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=5e-5)


def test_t_cdf_and_incomplete_beta_known_values():
    assert t_cdf(0.0, 5) == pytest.approx(0.5)
    assert t_cdf(2.0, 1) == pytest.approx(0.5 + math.atan(2.0) / math.pi)  # Cauchy
    assert incomplete_beta(2, 3, 0.4) == pytest.approx(0.5248)  # 1 - sum of binomial terms
    assert incomplete_beta(1, 1, 0.3) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_spread_is_the_t_interval_across_seeds():
    s = spread([0.30, 0.35, 0.40])
    assert s.mean == pytest.approx(0.35) and s.sd == pytest.approx(0.05)
    half = 4.3027 * 0.05 / math.sqrt(3)
    assert (s.low, s.high) == pytest.approx((0.35 - half, 0.35 + half), abs=1e-5)
    assert spread([0.4]) == spread_from_moments(1, 0.4, None)
    assert spread([0.4]).sd is None and spread([0.4]).low is None


def test_one_sample_test_against_a_base_score_with_bonferroni():
    # Seeds 0.50, 0.55, 0.60 against a base of 0.30: diff 0.25, se 0.05 / sqrt(3).
    test = one_sample_test(0.30, [0.50, 0.55, 0.60], alpha=0.05, comparisons=2)
    half = t_quantile(1 - 0.0125, 2) * 0.05 / math.sqrt(3)
    assert test.diff == pytest.approx(0.25)
    assert (test.low, test.high) == pytest.approx((0.25 - half, 0.25 + half))
    # df = 2 has a closed form: P(|T| > t) = 1 - t / sqrt(2 + t^2), here t = 5 sqrt(3).
    t = 0.25 / (0.05 / math.sqrt(3))
    assert test.verdict == "better"
    assert test.p_value == pytest.approx(1 - t / math.sqrt(2 + t * t))
    noisy = one_sample_test(0.30, [0.10, 0.60], alpha=0.05, comparisons=4)
    assert noisy.verdict == "no significant difference"
    assert one_sample_test(0.30, [0.6]).verdict == "too few seeds"


def test_seeds_that_all_score_alike_give_no_verdict():
    alike = one_sample_test(0.30, [0.6, 0.6, 0.6])
    assert alike.verdict == NO_SPREAD and alike.low is None and alike.diff == pytest.approx(0.3)
    assert welch_test([0.5, 0.5], [0.7, 0.7]).verdict == NO_SPREAD
    assert welch_test([0.5, 0.5], [0.7, 0.8]).verdict != NO_SPREAD


def test_welch_against_closed_forms():
    # Equal sizes and variances: Welch's df is 2n - 2 = 4, and t_4 has a closed-form CDF.
    test = welch_test([1, 2, 3], [3, 4, 5])
    t = 2 / math.sqrt(2 / 3)
    cdf = 0.5 + 3 / 8 * (t / math.sqrt(1 + t * t / 4)) * (1 - t * t / (12 * (1 + t * t / 4)))
    assert test.df == pytest.approx(4.0)
    assert test.p_value == pytest.approx(2 * (1 - cdf))
    assert (test.low, test.high) == pytest.approx(
        (2 - 2.7764 * 2 / t, 2 + 2.7764 * 2 / t), abs=1e-4
    )
    assert test.verdict == "no significant difference"
    # Unequal variances: the Welch-Satterthwaite df, by hand.
    a, b = [20.8, 22.3, 19.1, 21.4], [25.0, 23.6, 26.1, 24.2, 25.5]
    va, vb = statistics.variance(a) / 4, statistics.variance(b) / 5
    uneven = welch_test(a, b)
    assert uneven.df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 4))
    assert uneven.verdict == "better" and uneven.diff == pytest.approx(24.88 - 20.9)


def test_group_test_orients_a_single_run_on_either_side():
    group = [0.5, 0.55, 0.6]
    forward, backward = group_test([0.3], group), group_test(group, [0.3])
    assert forward.verdict == "better" and backward.verdict == "worse"
    assert backward.diff == pytest.approx(-forward.diff)
    assert forward.low is not None and forward.high is not None
    assert (backward.low, backward.high) == pytest.approx((-forward.high, -forward.low))
    with pytest.raises(ValueError):
        group_test([0.3], [0.4])
