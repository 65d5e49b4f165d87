"""labbench.core.stats against known values, edge cases and its own invariants."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labbench.core.stats import (
    PairedBootstrap,
    bootstrap_mean_interval,
    compare_scores,
    mcnemar_exact,
    mean_of_group_means_interval,
    overall_interval,
    paired_bootstrap,
    wilson_interval,
)


def rounded(pair: tuple[float, float], digits: int = 4) -> tuple[float, float]:
    return (round(pair[0], digits), round(pair[1], digits))


def test_wilson_known_values():
    assert rounded(wilson_interval(8, 10)) == (0.4902, 0.9433)
    assert rounded(wilson_interval(8, 10, confidence=0.99)) == (0.4008, 0.9599)
    assert rounded(wilson_interval(50, 100)) == (0.4038, 0.5962)


def test_wilson_edges_are_exact():
    assert wilson_interval(0, 10)[0] == 0.0
    assert rounded(wilson_interval(0, 10)) == (0.0, 0.2775)
    assert wilson_interval(10, 10)[1] == 1.0
    assert rounded(wilson_interval(10, 10)) == (0.7225, 1.0)


def test_wilson_no_observations_is_the_whole_range():
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    "successes, n, confidence",
    [(-1, 10, 0.95), (11, 10, 0.95), (0, -1, 0.95), (5, 10, 0.0), (5, 10, 1.0)],
)
def test_wilson_rejects_impossible_input(successes, n, confidence):
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_rate_and_is_symmetric(case):
    k, n = case
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    mirror_low, mirror_high = wilson_interval(n - k, n)
    assert low == pytest.approx(1 - mirror_high, abs=1e-12)
    assert high == pytest.approx(1 - mirror_low, abs=1e-12)


def test_mcnemar_known_values():
    assert mcnemar_exact(0, 6) == 0.03125
    assert mcnemar_exact(6, 0) == 0.03125
    assert mcnemar_exact(1, 1) == 1.0
    assert mcnemar_exact(2, 10) == pytest.approx(0.0386, abs=1e-4)
    assert mcnemar_exact(2, 10) == 2 * (1 + 12 + 66) / 2**12
    assert mcnemar_exact(0, 0) == 1.0


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_bootstrap_interval_is_deterministic_per_seed():
    values = [0.0, 0.2, 0.5, 0.5, 0.7, 0.9, 1.0, 1.0, 0.3, 0.6]
    first = bootstrap_mean_interval(values, seed=7)
    assert bootstrap_mean_interval(values, seed=7) == first
    assert bootstrap_mean_interval(values, seed=8) != first
    low, high = first
    assert low < sum(values) / len(values) < high


def test_bootstrap_interval_of_constant_values_is_a_point():
    assert bootstrap_mean_interval([0.4] * 12) == pytest.approx((0.4, 0.4))


def test_bootstrap_interval_narrows_with_lower_confidence():
    values = [i / 20 for i in range(21)]
    low95, high95 = bootstrap_mean_interval(values)
    low50, high50 = bootstrap_mean_interval(values, confidence=0.5)
    assert low95 < low50 < high50 < high95


def test_bootstrap_interval_needs_values():
    with pytest.raises(ValueError):
        bootstrap_mean_interval([])


def test_paired_bootstrap_on_identical_inputs():
    scores = [0.1, 0.5, 0.9, 1.0, 0.0, 0.3]
    assert paired_bootstrap(scores, scores) == PairedBootstrap(0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_sees_a_consistent_gain():
    a = [0.2, 0.4, 0.3, 0.5, 0.1, 0.6, 0.2, 0.4, 0.3, 0.5] * 3
    b = [x + 0.2 for x in a]
    result = paired_bootstrap(a, b)
    assert result.mean_diff == pytest.approx(0.2)
    assert result.low == pytest.approx(0.2) and result.high == pytest.approx(0.2)
    assert result.p_value == 0.0
    assert paired_bootstrap(a, b) == result  # same seed, same answer


def test_paired_bootstrap_p_value_is_two_sided():
    a = [0.5] * 10
    up = [0.5] * 7 + [0.9, 0.1, 0.7]
    down = [0.5] * 7 + [0.1, 0.9, 0.3]
    assert paired_bootstrap(a, up).p_value == paired_bootstrap(a, down).p_value
    assert 0.0 < paired_bootstrap(a, up).p_value <= 1.0


def test_paired_bootstrap_needs_equal_lengths():
    with pytest.raises(ValueError):
        paired_bootstrap([0.1, 0.2], [0.1])


def test_compare_identical_is_no_significant_difference():
    for scores in ([1.0, 0.0] * 15, [0.25, 0.5, 0.75] * 10):
        comparison = compare_scores(scores, scores)
        assert comparison.verdict == "no significant difference"
        assert comparison.p_value == 1.0
        assert comparison.mean_diff == 0.0
        assert not comparison.significant


def test_compare_binary_scores_use_exact_mcnemar():
    # 2 prompts went pass -> fail, 10 went fail -> pass, 18 stayed the same.
    a = [1.0] * 2 + [0.0] * 10 + [1.0] * 9 + [0.0] * 9
    b = [0.0] * 2 + [1.0] * 10 + [1.0] * 9 + [0.0] * 9
    comparison = compare_scores(a, b)
    assert comparison.test == "mcnemar"
    assert (comparison.pass_to_fail, comparison.fail_to_pass) == (2, 10)
    assert comparison.p_value == mcnemar_exact(2, 10)
    assert comparison.verdict == "better"
    assert comparison.mean_diff == pytest.approx(8 / 30)
    assert compare_scores(b, a).verdict == "worse"
    assert compare_scores(a, b, alpha=0.01).verdict == "no significant difference"


def test_compare_partial_scores_use_the_paired_bootstrap():
    a = [0.8, 0.9, 0.7, 0.6, 1.0, 0.75] * 5
    b = [score - 0.3 for score in a]
    comparison = compare_scores(a, b)
    assert comparison.test == "bootstrap"
    assert comparison.verdict == "worse"
    assert comparison.mean_a - comparison.mean_b == pytest.approx(0.3)
    assert comparison.low is not None and comparison.high is not None
    assert comparison.low <= comparison.mean_diff <= comparison.high < 0


def test_compare_small_noisy_change_is_not_significant():
    a = [0.5, 0.6, 0.4, 0.7, 0.3] * 6
    b = list(a)
    b[0], b[3] = 0.6, 0.6  # one up, one down
    assert compare_scores(a, b).verdict == "no significant difference"


def test_compare_rejects_bad_input():
    with pytest.raises(ValueError):
        compare_scores([], [])
    with pytest.raises(ValueError):
        compare_scores([1.0], [1.0, 0.0])
    with pytest.raises(ValueError):
        compare_scores([1.0], [0.0], alpha=0)


def test_mean_of_group_means_interval_with_one_group_is_the_plain_bootstrap():
    values = [0.0, 0.5, 1.0, 1.0, 0.25, 0.0, 1.0]
    assert mean_of_group_means_interval({"a": values}, seed=3) == bootstrap_mean_interval(
        values, seed=3
    )


def test_mean_of_group_means_interval_weights_groups_equally():
    # Category means 1.0 and 0.0 whatever is resampled: overall is exactly 0.5.
    groups = {"big": [1.0] * 20, "small": [0.0, 0.0]}
    assert mean_of_group_means_interval(groups) == (0.5, 0.5)
    low, high = mean_of_group_means_interval({"a": [0.0, 1.0, 1.0], "b": [0.0, 0.5]})
    assert 0.0 <= low < (2 / 3 + 0.25) / 2 < high <= 1.0


def test_mean_of_group_means_interval_needs_values():
    with pytest.raises(ValueError):
        mean_of_group_means_interval({"a": []})


prompt_triples = st.lists(
    st.tuples(
        st.sampled_from(["tool", "code", "reason"]),
        st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    ),
    min_size=1,
    max_size=40,
).map(lambda pairs: [(f"p{i:02d}", category, score) for i, (category, score) in enumerate(pairs)])


@given(prompt_triples, st.randoms(use_true_random=False))
def test_overall_interval_ignores_the_order(prompts, rng):
    shuffled = list(prompts)
    rng.shuffle(shuffled)
    assert overall_interval(shuffled) == overall_interval(prompts)


def test_overall_interval_methods():
    # Pass/fail: Wilson, whatever the size; with equal categories it is Wilson on the rate.
    binary = [(f"p{i}", "ab"[i % 2], float(i % 3 == 0)) for i in range(12)]
    assert overall_interval(binary).method == "wilson"
    assert overall_interval(binary)[:2] == wilson_interval(4, 12)
    everything = overall_interval([("p1", "a", 1.0), ("p2", "b", 1.0)])
    assert everything.high == 1.0 and (everything.low or 1.0) < 0.5  # never the point 100-100
    # Graded scores: the bootstrap from 5 prompts per category, else no interval.
    graded = [(f"p{i}", "ab"[i % 2], 0.5 * (i % 3)) for i in range(10)]
    assert overall_interval(graded).method == "bootstrap"
    assert overall_interval(graded[:9]) == (None, None, "n too small")
    # Unscored prompts (score None) are left out.
    assert overall_interval([("p1", "a", None)]) == (None, None, "n too small")
    assert overall_interval([("p1", "a", None), ("p2", "a", 1.0), ("p3", "a", 0.0)])[:2] == (
        wilson_interval(1, 2)
    )
