"""`just compare A B` on recorded eval runs in a temporary ledger, run as a user would."""

import json

import pytest
from helpers import run_main

from labbench.record.ledger import finish_run, open_ledger, start_run

PROMPTS = [f"{category}-{i:02d}" for category in ("python", "shell", "sql") for i in range(10)]


def record_eval(
    ledger,
    scores: dict[str, float] | list[float],
    suite: str = "baseline",
    status: str = "ok",
    kind: str = "eval",
    adapter: str | None = None,
) -> int:
    """Record a run with one result per prompt (a list is matched to PROMPTS in order)."""
    if isinstance(scores, list):
        scores = dict(zip(PROMPTS, scores, strict=True))
    db = open_ledger(ledger)
    run = start_run(
        db,
        kind,
        {"suite_path": f"suites/{suite}.toml"},
        model="models/tiny",
        adapter=adapter,
        suite=suite,
    )
    for prompt_id, score in scores.items():
        run.add_eval_result(
            {
                "prompt_id": prompt_id,
                "category": prompt_id.split("-")[0],
                "score": score,
                "explanation": "all checks passed" if score >= 0.5 else "wrong tool called",
                "finish_reason": "stop",
                "duration_ms": 120.0,
            }
        )
    finish_run(run, status, None if status == "ok" else "the server exited")
    return run.id


BASE = [1.0] * 27 + [0.0] * 3  # 27 of 30 pass
WORSE = [1.0] * 12 + [0.0] * 18  # 15 of A's passes now fail
BETTER = [1.0] * 30


def compare(*args: str):
    result = run_main("compare", *args)
    assert "Traceback" not in result.stderr
    return result


def verdict(stdout: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith("verdict: ")]
    return line.removeprefix("verdict: ").split(" (")[0]


def one_line_error(result) -> str:
    assert result.returncode != 0
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_clearly_worse_fails_the_gate(isolated_ledger):
    a = record_eval(isolated_ledger, BASE)
    b = record_eval(isolated_ledger, WORSE, adapter="adapters/7")

    result = compare(str(a), str(b))
    assert result.returncode == 0, result.stderr
    assert verdict(result.stdout) == "worse"
    assert "exact McNemar" in result.stdout and "15 pass -> fail, 0 fail -> pass" in result.stdout
    assert "Δ overall (B - A): -50.0 pts" in result.stdout
    assert "mean change per prompt (B - A): -50.0 pts" in result.stdout
    assert "adapters/7" in result.stdout and "90.0%" in result.stdout

    gated = compare(str(a), str(b), "--gate")
    assert gated.returncode == 1
    assert verdict(gated.stdout) == "worse"
    assert (
        gated.stdout.strip()
        .splitlines()[-1]
        .startswith(f"GATE FAILED: run {b} is significantly worse than run {a}")
    )


def test_identical_runs_show_no_difference_and_pass_the_gate(isolated_ledger):
    a = record_eval(isolated_ledger, BASE)
    b = record_eval(isolated_ledger, BASE)
    result = compare(str(a), str(b), "--gate")
    assert result.returncode == 0, result.stderr
    assert verdict(result.stdout) == "no significant difference"
    assert "p-value: 1.0000" in result.stdout
    assert "30 prompts unchanged" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "gate passed"
    assert result.stderr == ""


def test_better(isolated_ledger):
    a = record_eval(isolated_ledger, WORSE)
    b = record_eval(isolated_ledger, BETTER)
    result = compare(str(a), str(b), "--gate")
    assert result.returncode == 0, result.stderr
    assert verdict(result.stdout) == "better"
    assert "gate passed" in result.stdout


def test_partial_scores_use_the_paired_bootstrap(isolated_ledger):
    a = record_eval(isolated_ledger, [0.6 + 0.01 * i for i in range(30)])
    b = record_eval(isolated_ledger, [0.3 + 0.01 * i for i in range(30)])
    result = compare(str(a), str(b), "--gate")
    assert result.returncode == 1
    assert "paired bootstrap" in result.stdout
    assert "p-value: < 0.0004" in result.stdout
    assert verdict(result.stdout) == "worse"


def test_alpha_as_a_make_style_word(isolated_ledger):
    # 2 pass -> fail and 10 fail -> pass: exact p = 0.0386, better at 0.05 but not at 0.01.
    a = record_eval(isolated_ledger, [1.0] * 2 + [0.0] * 10 + [1.0] * 9 + [0.0] * 9)
    b = record_eval(isolated_ledger, [0.0] * 2 + [1.0] * 10 + [1.0] * 9 + [0.0] * 9)
    assert "p-value: 0.0386" in compare(str(a), str(b)).stdout
    assert verdict(compare(str(a), str(b)).stdout) == "better"
    assert verdict(compare(str(a), str(b), "alpha=0.01").stdout) == "no significant difference"


def test_ledger_as_a_make_style_word(isolated_ledger, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere" / "ledger.db"
    a = record_eval(other, BASE)
    b = record_eval(other, WORSE)
    monkeypatch.delenv("LEDGER_DB")
    result = compare(str(a), str(b), f"ledger={other}", "--gate")
    assert result.returncode == 1 and verdict(result.stdout) == "worse"


def test_flips_come_before_other_changes(isolated_ledger):
    a_scores = dict.fromkeys(PROMPTS, 0.8)
    b_scores = dict(a_scores)
    b_scores["python-03"] = 0.7  # -0.1, no flip
    b_scores["shell-04"] = 0.3  # -0.5, flip
    b_scores["sql-05"] = 0.0  # -0.8, flip
    b_scores["python-07"] = 1.0  # +0.2, no flip
    a_scores["sql-09"], b_scores["sql-09"] = 0.45, 0.55  # +0.1, flip: listed before bigger changes
    a = record_eval(isolated_ledger, a_scores)
    b = record_eval(isolated_ledger, b_scores)

    result = compare(str(a), str(b))
    assert result.returncode == 0, result.stderr
    changed = ["sql-05", "shell-04", "sql-09", "python-07", "python-03"]
    rows = [line for line in result.stdout.splitlines() if line.split(" ")[0] in PROMPTS]
    assert [row.split()[0] for row in rows] == changed
    assert [("pass -> fail" in r, "fail -> pass" in r) for r in rows] == [
        (True, False),
        (True, False),
        (False, True),
        (False, False),
        (False, False),
    ]
    assert "wrong tool called" in rows[0]
    assert "25 prompts unchanged" in result.stdout


def test_different_suites_are_refused(isolated_ledger):
    a = record_eval(isolated_ledger, BASE, suite="baseline")
    b = record_eval(isolated_ledger, BASE, suite="tool-use")
    line = one_line_error(compare(str(a), str(b)))
    assert "'baseline'" in line and "'tool-use'" in line and "same suite" in line


def test_unknown_run_id(isolated_ledger):
    a = record_eval(isolated_ledger, BASE)
    assert one_line_error(compare(str(a), "99")) == "error: no run 99 in the ledger"


def test_missing_ledger(isolated_ledger):
    line = one_line_error(compare("1", "2"))
    assert str(isolated_ledger) in line
    assert not isolated_ledger.exists()


def test_a_run_that_is_not_an_eval(isolated_ledger):
    a = record_eval(isolated_ledger, BASE)
    b = record_eval(isolated_ledger, {}, kind="train")
    line = one_line_error(compare(str(a), str(b)))
    assert f"run {b} is a train run, not an eval" in line


def test_a_run_without_results(isolated_ledger):
    a = record_eval(isolated_ledger, BASE)
    b = record_eval(isolated_ledger, {}, status="failed")
    assert one_line_error(compare(str(a), str(b))) == f"error: run {b} has no results to compare"


@pytest.mark.parametrize("word", ["x", "1.5"])
def test_a_run_id_must_be_an_integer(isolated_ledger, word):
    result = compare("1", word)
    assert result.returncode == 2 and "invalid int value" in result.stderr


def test_alpha_out_of_range(isolated_ledger):
    a = record_eval(isolated_ledger, BASE)
    assert "--alpha" in one_line_error(compare(str(a), str(a), "--alpha", "1.5"))


def test_different_prompt_sets_compare_the_shared_prompts(isolated_ledger):
    a = record_eval(isolated_ledger, dict.fromkeys(PROMPTS, 1.0))
    b = record_eval(isolated_ledger, dict.fromkeys(PROMPTS[:27] + ["extra-01"], 1.0))
    result = compare(str(a), str(b))
    assert result.returncode == 0, result.stderr
    assert "comparing the 27 shared prompts, left out 4 (3 only in A, 1 only in B)" in result.stdout
    assert "27 prompts unchanged" in result.stdout
    assert "(B relative to A, alpha = 0.05, 27 prompts)" in result.stdout


def test_unfinished_runs_are_compared_with_a_warning(isolated_ledger):
    a = record_eval(isolated_ledger, BASE)
    b = record_eval(isolated_ledger, dict.fromkeys(PROMPTS[:20], 1.0), status="interrupted")
    result = compare(str(a), str(b))
    assert result.returncode == 0
    assert result.stderr.strip() == (
        f"warning: run {b} did not finish (status interrupted), so its results may be partial"
    )
    assert "left out 10" in result.stdout
    assert verdict(result.stdout) == "no significant difference"
    # An unfinished run proves nothing either way, so it never passes a gate.
    gated = compare(str(a), str(b), "--gate")
    assert gated.returncode == 1
    last = gated.stdout.strip().splitlines()[-1]
    assert last == f"GATE FAILED: run {b} did not finish (status interrupted)"


def test_groups_that_cannot_be_compared_are_named(isolated_ledger):
    runs = [record_eval(isolated_ledger, BASE) for _ in range(3)]
    train = record_eval(isolated_ledger, BASE, kind="train")
    a, b, c = runs
    cases = {
        ("sweep:999", str(a)): "error: sweep:999: no run 999 in this ledger",
        (f"sweep:{train}/rank=4", str(a)): f"error: sweep:{train}/rank=4: run {train} is a train"
        " run, not a sweep",
        (f"runs:{a},{a}", f"runs:{b},{c}"): f"error: runs:{a},{a}: run {a} is listed twice;"
        " each run counts once",
        (f"runs:{a},{b}", f"runs:{b},{c}"): f"error: eval run(s) {b} are in both groups: a run"
        " is not compared to itself",
    }
    for words, expected in cases.items():
        assert one_line_error(compare(*words)) == expected


def test_one_headline_per_run_and_the_test_says_what_it_compares(isolated_ledger):
    """Issue 19.9: each run shows its overall with its own CI, as `just eval` and the journal
    do, and the paired test says it is about the prompts, each counted once, which is not the
    headline when categories differ in size."""
    from labbench.core.formatting import with_ci
    from labbench.core.stats import interval_summary

    python = {f"python-{i:02d}": 1.0 for i in range(20)}
    a = record_eval(isolated_ledger, python | {f"sql-{i:02d}": 0.0 for i in range(5)})
    b = record_eval(isolated_ledger, python | {f"sql-{i:02d}": 1.0 for i in range(5)})
    db = open_ledger(isolated_ledger)
    for run_id in (a, b):  # what a finished eval stores: its CI
        sql = "SELECT prompt_id, category, score FROM eval_results WHERE run_id = ?"
        rows = db.query(sql, [run_id])
        db.table("runs").update(run_id, {"summary": json.dumps(interval_summary(list(rows)))})
    shown = {
        row["run_id"]: with_ci(row["overall"], row["ci_low"], row["ci_high"], row["ci_method"])
        for row in db.query("SELECT * FROM cumulative_results")
    }
    result = compare(str(a), str(b))
    assert result.returncode == 0, result.stderr
    header = result.stdout.split("Δ overall")[0]
    assert "overall (95% CI)" in header and "prompt mean" not in result.stdout
    for run_id, label in ((a, "A"), (b, "B")):
        [line] = [line for line in header.splitlines() if line.startswith(f"{label} ")]
        assert line.rstrip().endswith(shown[run_id])  # the journal's number, with its CI
    assert shown[a].startswith("50.0% (") and shown[b].startswith("100.0% (")
    assert "Δ overall (B - A): +50.0 pts" in result.stdout  # the journal's Δ
    assert "paired test: the 25 prompts both runs scored, each counted once" in result.stdout
    assert "mean change per prompt (B - A): +20.0 pts" in result.stdout  # 5 of 25 prompts
