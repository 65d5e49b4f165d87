"""Compare two eval runs of the same suite prompt by prompt, and say whether B beat A.

Examples:

    just compare 3 5                  # run 5 (B) against run 3 (A)
    just compare 3 5 --gate           # exit 1 when run 5 is significantly worse than run 3
    just compare 3 5 alpha=0.01 ledger=experiments/ledger.db
    just compare 3 sweep:12/lr=3e-4               # a sweep's configuration (its seeds) vs run 3
    just compare sweep:12/rank=8 sweep:12/rank=16 # two configurations, seeds as replicates
    just compare runs:4,7,9 runs:10,11,12

Two run ids are compared prompt by prompt (paired). A group on either side, `runs:ID,ID,...` or
`sweep:ID/key=value[,key=value]` (one configuration of a sweep run, every finished seed), is
compared on the runs' overall scores with seeds as replicates: Welch's t between two groups, a
one-sample t between a group and a single run.
"""

import argparse
import json
import sys

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.core.formatting import DASH, percent, signed_points, terminal_table, with_ci
from labbench.core.stats import (
    PASS_THRESHOLD,
    Comparison,
    compare_scores,
    flip,
    interval_summary,
    p_value_text,
)
from labbench.machine.hardware import hardware_line
from labbench.present import recording
from labbench.present.cumulative import overall_header
from labbench.record.ledger import run_scores

DEFAULT_ALPHA = 0.05  # significance level of the paired test, between 0 and 1
WHY_WIDTH = 60  # characters of B's explanation shown per changed prompt
UNCHANGED = 1e-9  # scores closer than this count as unchanged


def run_or_group(text: str) -> int | str:
    """A run id (an int), or a group as written: runs:4,7,9 or sweep:ID/key=value."""
    if text.isdigit():
        return int(text)
    if text.startswith(("runs:", "sweep:")):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid int value: {text!r} (give a run id, runs:4,7,9 or sweep:ID/key=value)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Compare eval run B with eval run A on the prompts they share.",
        epilog="Make-style key=value words work too: alpha=0.01 ledger=PATH.",
    )
    parser.add_argument(
        "a",
        type=run_or_group,
        metavar="A",
        help="the reference: an eval run id, runs:4,7,9 or sweep:ID/key=value",
    )
    parser.add_argument(
        "b", type=run_or_group, metavar="B", help="judged against A: a run id or a group"
    )
    parser.add_argument(
        "--gate", action="store_true", help="exit 1 when B is significantly worse than A"
    )
    parser.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help="significance level (default: 0.05)"
    )
    cli.add_ledger_args(parser)
    return parser


def load_run(db, run_id: int) -> dict:
    rows = list(db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    if not rows:
        raise UserError(f"no run {run_id} in the ledger")
    run = rows[0]
    if run["kind"] != "eval":
        raise UserError(f"run {run_id} is a {run['kind']} run, not an eval: only evals compare")
    return run


def load_results(db, run_id: int) -> dict[str, dict]:
    """The run's prompts by id: the mean score over epochs (the prompt_scores view), with the
    first epoch's error and explanation; score None for a prompt left unscored (its tests not
    run, exec=false)."""
    rows = db.query(
        "SELECT p.prompt_id, p.category, p.score, first.error, first.explanation"
        " FROM prompt_scores AS p JOIN eval_results AS first"
        "   ON first.run_id = p.run_id AND first.prompt_id = p.prompt_id"
        "   AND first.epoch = (SELECT MIN(epoch) FROM eval_results AS e"
        "                      WHERE e.run_id = p.run_id AND e.prompt_id = p.prompt_id)"
        " WHERE p.run_id = ? ORDER BY p.prompt_id",
        [run_id],
    )
    results = {row["prompt_id"]: row for row in rows}
    if not results:
        raise UserError(f"run {run_id} has no results to compare")
    return results


def check_suites(a: dict, b: dict) -> None:
    if a["suite"] != b["suite"]:
        raise UserError(
            f"run {a['id']} is suite {a['suite']!r} and run {b['id']} is suite {b['suite']!r}:"
            " only runs of the same suite can be compared"
        )


def unfinished_warnings(*runs: dict) -> list[str]:
    return [
        f"warning: run {run['id']} did not finish (status {run['status']}), so its results may"
        " be partial"
        for run in runs
        if run["status"] != "ok"
    ]


def hardware_note(a: dict, b: dict) -> str | None:
    """A line when the two runs ran on different hardware or BLAS (None when the same or either
    is unknown): speed and even scores may differ for that reason alone."""
    if not a.get("hardware") or not b.get("hardware"):
        return None
    line_a = hardware_line(json.loads(a["hardware"]))
    line_b = hardware_line(json.loads(b["hardware"]))
    if line_a == line_b:
        return None
    return f"note: the runs ran on different hardware: A: {line_a}; B: {line_b}"


def common_prompts(results_a: dict, results_b: dict) -> tuple[list[str], str | None]:
    """The prompt ids both runs scored, and a note on the ones left out (None if none were):
    prompts only one run has, and prompts either run left unscored (exec=false)."""
    shared = sorted(results_a.keys() & results_b.keys())
    only_a, only_b = len(results_a.keys() - shared), len(results_b.keys() - shared)
    common = [
        prompt_id
        for prompt_id in shared
        if results_a[prompt_id]["score"] is not None and results_b[prompt_id]["score"] is not None
    ]
    if not common:
        raise UserError("the two runs share no scored prompts")
    unscored = len(shared) - len(common)
    unscored_note = f"left out {unscored} unscored in A or B (tests not run)"
    if only_a or only_b:
        note = (
            f"note: the prompt sets differ: comparing the {len(common)} shared prompts,"
            f" left out {only_a + only_b} ({only_a} only in A, {only_b} only in B)"
        )
        return common, note + (f"; {unscored_note}" if unscored else "")
    if unscored:
        return (
            common,
            f"note: comparing the {len(common)} prompts both runs scored, {unscored_note}",
        )
    return common, None


def changes(common: list[str], results_a: dict, results_b: dict) -> tuple[list[list], int]:
    """Changed prompts as table rows, flips first, then by |change| descending; and the number
    unchanged."""
    changed = []
    for prompt_id in common:
        a, b = results_a[prompt_id], results_b[prompt_id]
        delta = b["score"] - a["score"]
        if abs(delta) < UNCHANGED:
            continue
        flipped = flip(a["score"], b["score"])
        row = [
            prompt_id,
            b["category"],
            f"{a['score']:.2f}",
            f"{b['score']:.2f}",
            f"{delta:+.2f}",
            flipped,
            _why(b),
        ]
        changed.append((not flipped, -abs(delta), prompt_id, row))
    changed.sort(key=lambda item: item[:3])
    return [item[3] for item in changed], len(common) - len(changed)


def _why(row: dict) -> str:
    text = (row["error"] or row["explanation"] or "").strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= WHY_WIDTH else line[: WHY_WIDTH - 3] + "..."


def headline(db, run: dict) -> str:
    """A run's one score, as `just eval` and the journal show it: overall (the mean of its
    category means) with its 95% CI; the CI is computed the same way for a run that stored none
    (one that did not finish)."""
    scores = run_scores(db, run["id"])
    if scores is None or scores["overall"] is None:
        return DASH
    low, high, method = scores["ci_low"], scores["ci_high"], scores["ci_method"]
    if method is None:
        rows = db.query(
            "SELECT prompt_id, category, score FROM prompt_scores"
            " WHERE run_id = ? AND score IS NOT NULL",
            [run["id"]],
        )
        found = interval_summary(list(rows))
        low, high = found["overall_ci_low"], found["overall_ci_high"]
        method = found["overall_ci_method"]
    return with_ci(scores["overall"], low, high, method)


def overall_of(db, run_id: int) -> float | None:
    found = run_scores(db, run_id)
    return found["overall"] if found else None


def format_header(db, run_a: dict, run_b: dict) -> str:
    """Each run with its one headline score (overall, 95% CI), and the change in it."""
    rows = [
        [
            label,
            run["id"],
            run["model"],
            run["adapter"] or "-",
            run["suite"],
            run["status"],
            headline(db, run),
        ]
        for label, run in (("A", run_a), ("B", run_b))
    ]
    name = overall_header(run_a["suite"]).removesuffix(" (95% CI)").replace("Overall", "overall")
    headers = ["", "run", "model", "adapter", "suite", "status", f"{name} (95% CI)"]
    a, b = overall_of(db, run_a["id"]), overall_of(db, run_b["id"])
    change = signed_points(None if a is None or b is None else b - a)
    return terminal_table(rows, headers) + f"\nΔ {name} (B - A): {change}"


def format_changes(rows: list[list], unchanged: int) -> str:
    lines = []
    if rows:
        headers = ["prompt", "category", "A", "B", "change", "flip", "B's explanation"]
        lines.append(terminal_table(rows, headers))
    lines.append(f"{unchanged} prompt{'s' if unchanged != 1 else ''} unchanged")
    return "\n".join(lines)


def format_test(comparison: Comparison) -> str:
    """The paired test, saying plainly what it compares: the shared prompts' scores, each
    prompt once, which is not the headline (overall weighs each category equally)."""
    c = comparison
    if c.test == "mcnemar":
        test = (
            f"exact McNemar test on pass/fail (score >= {PASS_THRESHOLD}):"
            f" {c.pass_to_fail} pass -> fail, {c.fail_to_pass} fail -> pass"
        )
    else:
        test = (
            f"paired bootstrap on the scores ({c.resamples} resamples):"
            f" 95% CI of the change {signed_points(c.low or 0.0)} to {signed_points(c.high or 0.0)}"
        )
    return "\n".join(
        [
            f"paired test: the {c.n} prompts both runs scored, each counted once"
            " (overall weighs categories equally, so its Δ can differ)",
            f"test: {test}",
            f"mean change per prompt (B - A): {signed_points(c.mean_diff)}",
            f"p-value: {_p_value(c)}",
            f"verdict: {c.verdict} (B relative to A, alpha = {c.alpha:g}, {c.n} prompts)",
        ]
    )


def _p_value(c: Comparison) -> str:
    text = p_value_text(c)
    if text.startswith("p < "):
        return f"{text.removeprefix('p ')} (no resample crossed zero)"
    return text.removeprefix("p = ")


def gate_message(comparison: Comparison, run_a: dict, run_b: dict) -> str:
    c = comparison
    unfinished = [run for run in (run_a, run_b) if run["status"] != "ok"]
    if unfinished:
        # A run that did not finish proves nothing either way: it cannot pass a gate.
        run = unfinished[0]
        return f"GATE FAILED: run {run['id']} did not finish (status {run['status']})"
    if c.verdict == "worse":
        return (
            f"GATE FAILED: run {run_b['id']} is significantly worse than run {run_a['id']}"
            f" ({signed_points(c.mean_diff)} per prompt, p = {_p_value(c)})"
        )
    return "gate passed"


def load_group(db, side: int | str) -> tuple[str, list[dict]]:
    """A side of the comparison: its label and its eval runs, each with its overall score."""
    from labbench.present.sweepreport import resolve_group

    if isinstance(side, int):
        label, ids = f"run {side}", [side]
    else:
        group = resolve_group(db, side)
        label, ids = group.label, group.run_ids
    runs = []
    for run_id in ids:
        run = load_run(db, run_id)
        found = list(db.query("SELECT overall FROM eval_summaries WHERE run_id = ?", [run_id]))
        if not found:
            raise UserError(f"run {run_id} has no results to compare")
        runs.append({**run, "overall": found[0]["overall"]})
    return label, runs


def compare_groups(db, args: argparse.Namespace) -> int:
    """A group on at least one side: the runs' overall scores, seeds as replicates."""
    from labbench.core.sweepstats import NO_SPREAD, group_test

    label_a, runs_a = load_group(db, args.a)
    label_b, runs_b = load_group(db, args.b)
    shared = sorted({run["id"] for run in runs_a} & {run["id"] for run in runs_b})
    if shared:
        # Reused sweep trials link the same eval runs into several sweeps.
        listed = ", ".join(map(str, shared))
        raise UserError(f"eval run(s) {listed} are in both groups: a run is not compared to itself")
    suites = sorted({run["suite"] for run in runs_a + runs_b})
    if len(suites) > 1:
        raise UserError(f"the runs are of different suites {suites}: only one suite compares")
    for warning in unfinished_warnings(*runs_a, *runs_b):
        print(warning, file=sys.stderr)
    if len(runs_a) == 1 and len(runs_b) == 1:
        raise UserError("two single runs: give their ids to compare them prompt by prompt")
    test = group_test([r["overall"] for r in runs_a], [r["overall"] for r in runs_b], args.alpha)
    rows = [
        [side, label, len(runs), ", ".join(str(r["id"]) for r in runs), percent(mean)]
        for side, label, runs, mean in (
            ("A", label_a, runs_a, test.mean_a),
            ("B", label_b, runs_b, test.mean_b),
        )
    ]
    print(terminal_table(rows, ["", "group", "runs", "eval runs", "mean overall"]))
    print(f"Δ mean overall (B - A): {signed_points(test.diff)}")
    if test.low is not None:
        print(
            f"test: {test.method}: {1 - test.alpha:.0%} CI of the change"
            f" {signed_points(test.low)} to {signed_points(test.high)},"
            f" p-value {test.p_value:.4f}"
        )
    elif test.verdict == NO_SPREAD:
        print(f"test: {test.method}: every run of a group scored alike, so no seed noise")
    else:
        print(f"test: {test.method}: a group needs at least 2 runs to measure seed noise")
    print(f"verdict: {test.verdict} (B relative to A, alpha = {test.alpha:g}, seeds as replicates)")
    if args.gate:
        if test.verdict == "worse":
            print(f"GATE FAILED: {label_b} is significantly worse than {label_a}")
            return 1
        print("gate passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if isinstance(args.a, str) or isinstance(args.b, str):
        with recording.reading_ledger(args.ledger) as ledger:
            return compare_groups(ledger.db, args)
    with recording.reading_ledger(args.ledger) as ledger:
        db = ledger.db
        run_a, run_b = load_run(db, args.a), load_run(db, args.b)
        check_suites(run_a, run_b)
        results_a, results_b = load_results(db, args.a), load_results(db, args.b)
        common, note = common_prompts(results_a, results_b)
        for warning in unfinished_warnings(run_a, run_b):
            print(warning, file=sys.stderr)
        scores_a = [results_a[p]["score"] for p in common]
        scores_b = [results_b[p]["score"] for p in common]
        comparison = compare_scores(scores_a, scores_b, alpha=args.alpha)

        print(format_header(db, run_a, run_b))
        for line in (note, hardware_note(run_a, run_b)):
            if line:
                print(line)
        print()
        print(format_changes(*changes(common, results_a, results_b)))
        print()
        print(format_test(comparison))
        if not args.gate:
            return 0
        message = gate_message(comparison, run_a, run_b)
        print(message)
        return 1 if message.startswith("GATE FAILED") else 0


if __name__ == "__main__":
    cli.run(main)
