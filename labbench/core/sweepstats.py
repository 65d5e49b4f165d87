"""Statistics with training seeds as the unit of replication: plain Python, no scipy.

A sweep trains each configuration once per seed and evaluates every adapter on the same suite,
so each configuration gives one overall score per seed. The spread of those scores is the
seed noise. Student's t is computed here from the regularized incomplete beta function
(Numerical Recipes' continued fraction); quantiles are found by bisection on the CDF.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

_EPS = 1e-15
_TINY = 1e-300


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be between 0 and 1, got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (t_quantile(0.975, 4) = 2.776...), by bisection."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be between 0 and 1, got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def two_sided_p(t: float, df: float) -> float:
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t)) if t else 1.0


@dataclass(frozen=True)
class Spread:
    """Scores across seeds: n, mean, sample standard deviation and the t-interval of the mean
    (None for low/high/sd with one seed: one seed says nothing about seed noise)."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None


def spread(values: Sequence[float], confidence: float = 0.95) -> Spread:
    if not values:
        raise ValueError("spread needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else None
    return spread_from_moments(n, mean, variance, confidence)


@dataclass(frozen=True)
class SeedTest:
    """B relative to A, with seeds (runs) as replicates."""

    # "better" | "worse" | "no significant difference" | "too few seeds" | NO_SPREAD
    verdict: str
    method: str  # in words, for the terminal and the journal
    mean_a: float
    mean_b: float
    diff: float  # mean_b - mean_a
    low: float | None  # confidence interval of diff (Bonferroni-widened when comparisons > 1)
    high: float | None
    p_value: float | None  # two-sided, uncorrected
    df: float | None
    alpha: float
    comparisons: int  # Bonferroni divisor: the interval's level is 1 - alpha / comparisons


# Every seed scored alike: the t-interval collapses to a point, which would call any difference
# real. Coarse scores (a small suite) often do this; it measures no seed noise, so no verdict.
NO_SPREAD = "no spread across seeds"


def _verdict(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "too few seeds"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no significant difference"


def one_sample_test(
    reference: float, values: Sequence[float], alpha: float = 0.05, comparisons: int = 1
) -> SeedTest:
    """Seed scores `values` against one fixed score (a base model's eval, or one run):
    a one-sample t-interval of mean(values) - reference."""
    s = spread(values)
    diff = s.mean - reference
    level = alpha / comparisons
    low = high = p_value = df = None
    verdict = "too few seeds"
    if s.sd is not None and s.sd > 0:
        df = s.n - 1
        se = s.sd / math.sqrt(s.n)
        half = t_quantile(1 - level / 2, df) * se
        low, high = diff - half, diff + half
        p_value = two_sided_p(diff / se, df)
        verdict = _verdict(low, high)
    elif s.sd is not None:
        verdict = NO_SPREAD
    method = f"one-sample t across {s.n} seeds"
    return SeedTest(
        verdict, method, reference, s.mean, diff, low, high, p_value, df, alpha, comparisons
    )


def welch_test(
    a: Sequence[float], b: Sequence[float], alpha: float = 0.05, comparisons: int = 1
) -> SeedTest:
    """Two groups of seed scores: Welch's t-interval of mean(b) - mean(a) (unequal variances,
    Welch-Satterthwaite degrees of freedom)."""
    sa, sb = spread(a), spread(b)
    diff = sb.mean - sa.mean
    low = high = p_value = df = None
    verdict = "too few seeds"
    if sa.sd is not None and sb.sd is not None:
        va, vb = sa.sd**2 / sa.n, sb.sd**2 / sb.n
        se = math.sqrt(va + vb)
        verdict = NO_SPREAD
        if se > 0:
            df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
            half = t_quantile(1 - alpha / comparisons / 2, df) * se
            low, high = diff - half, diff + half
            p_value = two_sided_p(diff / se, df)
            verdict = _verdict(low, high)
    method = f"Welch's t, {sa.n} vs {sb.n} seeds"
    return SeedTest(
        verdict, method, sa.mean, sb.mean, diff, low, high, p_value, df, alpha, comparisons
    )


def spread_from_moments(
    n: int, mean: float, variance: float | None, confidence: float = 0.95
) -> Spread:
    """The Spread of n values given their mean and sample variance (as the ledger's
    sweep_scores view has them)."""
    if n < 2 or variance is None:
        return Spread(n, mean, None, None, None)
    sd = math.sqrt(max(0.0, variance))  # the view's one-pass variance can dip below 0 by ~1e-17
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n)
    return Spread(n, mean, sd, mean - half, mean + half)


def group_test(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> SeedTest:
    """B relative to A, each a group of runs' overall scores (one per seed): Welch's t when both
    have several, a one-sample t of the group against a single run otherwise."""
    if len(a) == 1 and len(b) == 1:
        raise ValueError("two single runs: compare them prompt by prompt instead")
    if len(a) == 1:
        return one_sample_test(a[0], b, alpha)
    if len(b) == 1:
        flipped = one_sample_test(b[0], a, alpha)
        verdict = {"better": "worse", "worse": "better"}.get(flipped.verdict, flipped.verdict)
        return replace(
            flipped,
            verdict=verdict,
            mean_a=flipped.mean_b,
            mean_b=flipped.mean_a,
            diff=-flipped.diff,
            low=None if flipped.high is None else -flipped.high,
            high=None if flipped.low is None else -flipped.low,
        )
    return welch_test(a, b, alpha)
