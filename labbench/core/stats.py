"""Small, exact statistics for comparing eval runs: plain Python, deterministic, instant to import.

Per-prompt scores are in [0, 1]. Two runs of the same suite are compared prompt by prompt
(paired): an exact McNemar test when every score is 0 or 1, a paired bootstrap otherwise.
Every resampling function takes a seed, so the same inputs always give the same answer.
"""

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

PASS_THRESHOLD = 0.5  # a prompt passes when its score is at least this


def flip(score_a: float, score_b: float) -> str:
    """Whether a prompt crossed the pass mark from run A to run B: "pass -> fail",
    "fail -> pass", or "" when both pass or both fail. metadata.yaml's compare_runs query
    writes the same rule in SQL; tests/test_datasette.py keeps the two in agreement."""
    passed_a, passed_b = score_a >= PASS_THRESHOLD, score_b >= PASS_THRESHOLD
    if passed_a == passed_b:
        return ""
    return "pass -> fail" if passed_a else "fail -> pass"


_ZERO = 1e-12  # a mean difference this close to 0 is 0 (float noise from summing differences)


def z_value(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion `successes / n`.

    n = 0 returns (0.0, 1.0): with no observations every rate is possible, and a report can show
    an empty category without special-casing it. Raises ValueError when n < 0 or `successes` is
    outside [0, n]. The bounds are exactly 0.0 for 0 successes and exactly 1.0 for n of n.
    """
    z = z_value(confidence)
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return (low, high)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, interpolating linearly (numpy's default)."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _resampled_means(values: Sequence[float], resamples: int, seed: int) -> list[float]:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = random.Random(seed)
    n = len(values)
    return sorted(_mean(rng.choices(values, k=n)) for _ in range(resamples))


def bootstrap_mean_interval(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval for the mean of `values`; the same seed gives the same
    interval. Raises ValueError on no values."""
    z_value(confidence)  # validates
    if not values:
        raise ValueError("bootstrap_mean_interval needs at least one value")
    means = _resampled_means(values, resamples, seed)
    tail = (1 - confidence) / 2
    return (_percentile(means, tail), _percentile(means, 1 - tail))


def mean_of_group_means_interval(
    groups: Mapping[str, Sequence[float]],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval for the mean of group means (an eval's overall score is
    the mean of its category means): prompts are resampled within their own category."""
    z_value(confidence)  # validates
    groups = {name: values for name, values in groups.items() if values}
    if not groups:
        raise ValueError("mean_of_group_means_interval needs at least one value")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = random.Random(seed)
    ordered = [groups[name] for name in sorted(groups)]
    statistics = sorted(
        _mean([_mean(rng.choices(values, k=len(values))) for values in ordered])
        for _ in range(resamples)
    )
    tail = (1 - confidence) / 2
    return (_percentile(statistics, tail), _percentile(statistics, 1 - tail))


MIN_BOOTSTRAP_PROMPTS = 5  # per category: fewer and the bootstrap collapses towards a point
CI_SEED = 0


class OverallInterval(NamedTuple):
    low: float | None
    high: float | None
    method: str  # "wilson", "bootstrap" or "n too small"


def overall_interval(
    prompts: Sequence[tuple[str, str, float | None]], confidence: float = 0.95
) -> OverallInterval:
    """The 95 % CI of an eval's overall score (the mean of its category means) from its
    (prompt_id, category, score) triples, whatever order they came in.

    Pass/fail scores (every score 0 or 1) get a Wilson interval at the overall score with n =
    the scored prompts, which never collapses to a point. Other scores get the stratified
    bootstrap over prompts sorted by id with a fixed seed, when every category has at least
    MIN_BOOTSTRAP_PROMPTS prompts; otherwise no interval ("n too small"). Unscored prompts
    (score None) are left out."""
    by_category: dict[str, list[float]] = {}
    for _, category, score in sorted(prompts, key=lambda p: (p[0], p[1])):
        if score is not None:
            by_category.setdefault(category, []).append(score)
    if not by_category:
        return OverallInterval(None, None, "n too small")
    scores = [s for values in by_category.values() for s in values]
    if is_binary(scores):
        overall = _mean([_mean(by_category[name]) for name in sorted(by_category)])
        # Wilson accepts fractional successes: with unequal categories the overall rate is a
        # weighted one, and n is the number of prompts behind it.
        n = len(scores)
        successes = overall * n
        if abs(successes - round(successes)) < 1e-9:  # float noise in the means
            successes = round(successes)
        low, high = wilson_interval(min(successes, n), n, confidence)
        return OverallInterval(low, high, "wilson")
    if min(len(values) for values in by_category.values()) < MIN_BOOTSTRAP_PROMPTS:
        return OverallInterval(None, None, "n too small")
    low, high = mean_of_group_means_interval(by_category, confidence, seed=CI_SEED)
    return OverallInterval(low, high, "bootstrap")


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """The unbiased pass@k estimator of the HumanEval paper (Chen et al. 2021) for one prompt
    sampled `samples` times with `correct` passing: 1 - C(n-c, k) / C(n, k). Raises ValueError
    when k is not between 1 and n or correct is not between 0 and n."""
    if not 1 <= k <= samples:
        raise ValueError(f"k must be between 1 and the number of samples {samples}, got {k}")
    if not 0 <= correct <= samples:
        raise ValueError(f"correct must be between 0 and {samples}, got {correct}")
    if samples - correct < k:
        return 1.0
    return 1.0 - math.comb(samples - correct, k) / math.comb(samples, k)


def pass_at_k_levels(epochs: int) -> list[int]:
    """The k reported for a run sampled `epochs` times: 1, then 5, 10, 100... up to epochs, and
    epochs itself."""
    levels = [1] + [k for k in (5, 10, 100) if k < epochs]
    return levels + ([epochs] if epochs > 1 else [])


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: b = pass->fail, c = fail->pass.

    A binomial test of min(b, c) out of b + c at p = 0.5, doubled and capped at 1; no discordant
    pairs gives 1.0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must not be negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class PairedBootstrap:
    mean_diff: float  # mean of b - a
    low: float  # 95% percentile-bootstrap interval of mean_diff
    high: float
    p_value: float  # two-sided: 2 x share of resampled means on the other side of 0, capped at 1


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = 5000, seed: int = 0
) -> PairedBootstrap:
    """Resample the per-prompt differences b - a (pairs stay together).

    The p-value is twice the share of resampled mean differences at or beyond 0 on the side
    opposite the observed one, capped at 1; a zero observed difference gives p = 1. With R
    resamples the smallest non-zero p-value is 2 / R, and 0.0 means "below that".
    """
    diffs = _paired_diffs(a, b)
    mean_diff = _mean(diffs)
    means = _resampled_means(diffs, resamples, seed)
    if mean_diff > _ZERO:
        other_side = sum(1 for m in means if m <= _ZERO)
    elif mean_diff < -_ZERO:
        other_side = sum(1 for m in means if m >= -_ZERO)
    else:
        mean_diff, other_side = 0.0, resamples
    p_value = min(1.0, 2 * other_side / resamples)
    return PairedBootstrap(mean_diff, _percentile(means, 0.025), _percentile(means, 0.975), p_value)


def _paired_diffs(a: Sequence[float], b: Sequence[float]) -> list[float]:
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same length, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("paired scores need at least one pair")
    return [y - x for x, y in zip(a, b, strict=True)]


def is_binary(values: Sequence[float]) -> bool:
    """True when every value is exactly 0 or 1 (pass/fail scoring)."""
    return all(v in (0.0, 1.0) for v in values)


@dataclass(frozen=True)
class Comparison:
    """B relative to A on the same prompts, in the same order."""

    verdict: str  # "better" | "worse" | "no significant difference"
    test: str  # "mcnemar" (every score 0 or 1) | "bootstrap" (paired, on the scores)
    p_value: float
    alpha: float
    n: int  # number of paired prompts
    mean_a: float
    mean_b: float
    mean_diff: float  # mean_b - mean_a
    pass_to_fail: int  # prompts with a >= pass_threshold > b (McNemar's b)
    fail_to_pass: int  # prompts with b >= pass_threshold > a (McNemar's c)
    low: float | None = None  # bootstrap only: 95% interval of mean_diff
    high: float | None = None
    resamples: int | None = None  # bootstrap only; the p-value's resolution is 2 / resamples

    @property
    def significant(self) -> bool:
        return self.verdict != "no significant difference"


def p_value_text(c: Comparison) -> str:
    """`p = 0.0123`, or `p < 0.0004` when no bootstrap resample crossed zero: a p-value of 0
    only says it is below the resampling's resolution, 2 / resamples."""
    if c.p_value == 0 and c.resamples:
        return f"p < {2 / c.resamples:.4f}"
    return f"p = {c.p_value:.4f}" if c.p_value >= 0.0001 else f"p = {c.p_value:.1e}"


def compare_scores(
    a: Sequence[float],
    b: Sequence[float],
    alpha: float = 0.05,
    pass_threshold: float = PASS_THRESHOLD,
    resamples: int = 5000,
    seed: int = 0,
) -> Comparison:
    """Is B better, worse or not significantly different from A? Scores are paired by index.

    Exact McNemar on pass/fail when every score is 0 or 1, else a paired bootstrap on the scores.
    The verdict is "better" or "worse" only when p < alpha, by the sign of mean(b) - mean(a).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    diffs = _paired_diffs(a, b)
    mean_diff = _mean(diffs)
    pass_to_fail = sum(1 for x, y in zip(a, b, strict=True) if x >= pass_threshold > y)
    fail_to_pass = sum(1 for x, y in zip(a, b, strict=True) if y >= pass_threshold > x)
    low = high = used_resamples = None
    if is_binary(a) and is_binary(b):
        test, p_value = "mcnemar", mcnemar_exact(pass_to_fail, fail_to_pass)
    else:
        boot = paired_bootstrap(a, b, resamples=resamples, seed=seed)
        test, p_value = "bootstrap", boot.p_value
        low, high, used_resamples = boot.low, boot.high, resamples
    if p_value < alpha and abs(mean_diff) > _ZERO:
        verdict = "better" if mean_diff > 0 else "worse"
    else:
        verdict = "no significant difference"
    return Comparison(
        verdict=verdict,
        test=test,
        p_value=p_value,
        alpha=alpha,
        n=len(diffs),
        mean_a=_mean(a),
        mean_b=_mean(b),
        mean_diff=mean_diff,
        pass_to_fail=pass_to_fail,
        fail_to_pass=fail_to_pass,
        low=low,
        high=high,
        resamples=used_resamples,
    )


def run_summary(rows: list[dict], epochs: int) -> dict:
    """What a finished eval stores in runs.summary: what SQL cannot compute, the 95% CI of
    overall (over the prompts' mean scores) and, with repeats, pass@k (a sample passes at
    PASS_THRESHOLD). The scores themselves are never stored: they come from the views."""
    summary = interval_summary(prompt_means(rows))
    if epochs > 1:
        summary["pass_at_k"] = pass_at_k_summary(list(_by_prompt(rows).values()), epochs)
    return summary


def prompt_means(rows: list[dict]) -> list[dict]:
    """One row per scored prompt (prompt_id, category, score): the mean of its samples."""
    return [
        {"prompt_id": prompt_id, "category": samples[0]["category"], "score": mean}
        for prompt_id, samples in _by_prompt(rows).items()
        if (mean := _mean_score(samples)) is not None
    ]


def _by_prompt(rows: list[dict]) -> dict[str, list[dict]]:
    by_prompt: dict[str, list[dict]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    return by_prompt


def _mean_score(samples: list[dict]) -> float | None:
    scored = [row["score"] for row in samples if row["score"] is not None]
    return sum(scored) / len(scored) if scored else None


def pass_at_k_summary(samples_by_prompt: list[list[dict]], epochs: int) -> dict[str, float]:
    """{"1": pass@1, "5": pass@5, ...}: the unbiased estimator averaged over the prompts that
    have every epoch scored (a prompt cut short by a stopped run is left out)."""
    complete = [
        samples
        for samples in samples_by_prompt
        if len(samples) == epochs and all(row["score"] is not None for row in samples)
    ]
    if not complete:
        return {}
    return {
        str(k): sum(
            pass_at_k(epochs, sum(row["score"] >= PASS_THRESHOLD for row in samples), k)
            for samples in complete
        )
        / len(complete)
        for k in pass_at_k_levels(epochs)
    }


def interval_summary(rows: list[dict]) -> dict:
    """The 95% CI of overall and its method (overall_interval), from one row per prompt
    (prompt_id, category, score): the same bytes whatever order the rows come in."""
    interval = overall_interval([(row["prompt_id"], row["category"], row["score"]) for row in rows])
    return {
        "overall_ci_low": interval.low,
        "overall_ci_high": interval.high,
        "overall_ci_method": interval.method,
    }
