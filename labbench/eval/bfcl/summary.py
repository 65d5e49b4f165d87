"""The leaderboard's numbers for a BFCL run, computed as BFCL's runner computes them
(`eval_checker/eval_runner_helper.py`), each with its 95 % interval, and the table of error
kinds per category.

- simple: the unweighted mean of simple_python, simple_java, simple_javascript;
- non-live: the unweighted mean of simple, multiple, parallel, parallel_multiple;
- live: the live AST categories weighted by their counts;
- irrelevance: the unweighted mean of irrelevance and live_irrelevance (those run), apart;
- relevance: live_relevance, apart.
A summary is given only when the run has every category it is made of: one made of fewer is
not the leaderboard's number. Intervals: weighted_proportions_interval below.
"""

import math
from collections.abc import Mapping

from labbench.core.stats import prompt_means, wilson_interval, z_value
from labbench.eval.bfcl import check as bfclcheck
from labbench.eval.prompting import TOO_LONG
from labbench.eval.suitetypes import Suite

SIMPLE = ("simple_python", "simple_java", "simple_javascript")
LIVE_AST = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")


def summary_weights(counts: dict[str, int]) -> dict[str, dict[str, float]]:
    """Summary name -> the weight of each category in it, for the summaries this run has."""
    summaries: dict[str, dict[str, float]] = {}
    if all(c in counts for c in SIMPLE):
        simple = {c: 1 / 3 for c in SIMPLE}
        summaries["simple"] = simple
        rest = ("multiple", "parallel", "parallel_multiple")
        if all(c in counts for c in rest):
            summaries["non-live"] = {c: w / 4 for c, w in simple.items()} | {c: 1 / 4 for c in rest}
    if all(c in counts for c in LIVE_AST):
        total = sum(counts[c] for c in LIVE_AST)
        summaries["live"] = {c: counts[c] / total for c in LIVE_AST}
    irrelevance = [c for c in ("irrelevance", "live_irrelevance") if c in counts]
    if irrelevance:
        summaries["irrelevance"] = {c: 1 / len(irrelevance) for c in irrelevance}
    if "live_relevance" in counts:
        summaries["relevance"] = {"live_relevance": 1.0}
    return summaries


def leaderboard(prompt_scores: list[dict]) -> dict[str, dict]:
    """From one row per prompt (category, score 0/1 or None): summary -> {score, ci_low,
    ci_high, prompts}. Unscored prompts are left out."""
    groups: dict[str, tuple[float, int]] = {}
    for row in prompt_scores:
        if row["score"] is None:
            continue
        successes, n = groups.get(row["category"], (0.0, 0))
        groups[row["category"]] = (successes + row["score"], n + 1)
    result = {}
    for name, weights in summary_weights({c: n for c, (_, n) in groups.items()}).items():
        low, high = weighted_proportions_interval(groups, weights)
        result[name] = {
            "score": sum(w * groups[c][0] / groups[c][1] for c, w in weights.items()),
            "ci_low": low,
            "ci_high": high,
            "prompts": sum(groups[c][1] for c in weights),
        }
    return result


ERROR_COLUMNS = (*bfclcheck.ERROR_KINDS, TOO_LONG)


def error_table(rows: list[dict]) -> tuple[list[str], list[list]]:
    """Headers and rows of the error kinds per category (rows: category, error_kind),
    with only the kinds that occur, and a total row."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        per_kind = counts.setdefault(row["category"], {})
        if row.get("error_kind"):
            per_kind[row["error_kind"]] = per_kind.get(row["error_kind"], 0) + 1
    kinds = [k for k in ERROR_COLUMNS if any(k in c for c in counts.values())]
    body = [[category, *(per.get(k, 0) for k in kinds)] for category, per in counts.items()]
    if not kinds:
        return ["Category"], []
    total = ["total", *(sum(per.get(k, 0) for per in counts.values()) for k in kinds)]
    return ["Category", *kinds], [*body, total]


def bfcl_summary(suite: Suite, rows: list[dict]) -> dict:
    """{"bfcl": the leaderboard's summaries} for a BFCL suite's run, else {}."""
    if not any(prompt.bfcl for prompt in suite.prompts):
        return {}
    return {"bfcl": leaderboard(prompt_means(rows))}


def weighted_proportions_interval(
    groups: Mapping[str, tuple[float, int]], weights: Mapping[str, float], confidence: float = 0.95
) -> tuple[float, float]:
    """The 95 % interval of sum(weight * proportion) over independent groups, each given as
    (successes, n): Wilson's for one group; for several, the stratified Agresti-Coull interval
    (each group's proportion shrunk by z^2/2 successes in z^2 tries for its variance, so a
    group at 0 % or 100 % still adds width), clipped to [0, 1]."""
    z = z_value(confidence)
    used = {name: groups[name] for name in weights if groups[name][1] > 0}
    if not used:
        return (0.0, 1.0)
    if len(used) == 1:
        [(successes, n)] = used.values()
        return wilson_interval(successes, n, confidence)
    estimate = math.fsum(weights[name] * s / n for name, (s, n) in used.items())
    variance = 0.0
    for name, (successes, n) in used.items():
        shrunk_n = n + z * z
        shrunk = (successes + z * z / 2) / shrunk_n
        variance += weights[name] ** 2 * shrunk * (1 - shrunk) / shrunk_n
    half = z * math.sqrt(variance)
    return (max(0.0, estimate - half), min(1.0, estimate + half))
