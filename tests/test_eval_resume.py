"""`just eval resume=RUN`: an interrupted eval finished in its own run, against real servers of
the shipped tiny chat model; what a resume refuses, checked before anything is asked."""

import json
from datetime import datetime

import pytest
from helpers import run_main
from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.eval.evalresume import changed_parts
from labbench.record.ledger import Run

CHAT_MODEL = PROJECT_ROOT / "models" / "tiny-chat"

# Six prompts, some of which the tiny chat model scores above 0 (so equal scores mean something).
SUITE = """
name = "resumecheck"
[defaults]
system = "You are a coding assistant: answer directly."
max_tokens = 24
[[prompts]]
id = "git-status"
category = "explain"
prompt = "Briefly, what does git status show? No need to run it."
expect_keywords = ["git"]
[[prompts]]
id = "http-404"
category = "explain"
prompt = "What does HTTP status 404 mean?"
expect_keywords = ["not found"]
[[prompts]]
id = "reverse-string"
category = "code"
prompt = "Write a Python function that reverses a string."
expect_keywords = ["def", "return"]
[[prompts]]
id = "largest"
category = "code"
prompt = "Write a Python function that finds the largest number in a list without using max()."
expect_keywords = ["def", "for", "return"]
[[prompts]]
id = "sum-list"
category = "code"
prompt = "Write a Python function that sums a list of numbers."
expect_keywords = ["def", "sum"]
[[prompts]]
id = "six-times-seven"
category = "answer"
prompt = "What is 6 times 7?"
expect_answer = "42"
"""


def scores_by_prompt(db: Database, run_id: int) -> dict[str, float]:
    rows = db.query("SELECT prompt_id, score FROM prompt_scores WHERE run_id = ?", [run_id])
    return {row["prompt_id"]: row["score"] for row in rows}


def responses(db: Database, run_id: int) -> dict[str, str]:
    rows = db.query("SELECT prompt_id, response FROM eval_results WHERE run_id = ?", [run_id])
    return {row["prompt_id"]: row["response"] for row in rows}


@pytest.mark.slow("mlx_lm.server three times: the eval, its resume, one never interrupted")
@pytest.mark.timeout(400)
def test_an_interrupted_eval_resumed_equals_one_never_interrupted(
    isolated_ledger, tmp_path, monkeypatch
):
    suite = tmp_path / "resumecheck.toml"
    suite.write_text(SUITE)
    flags = (f"model={CHAT_MODEL}", f"suite={suite}", "concurrency=2")
    straight = run_main("eval", *flags)
    assert straight.returncode == 0, straight.stderr
    db = Database(isolated_ledger)
    scores = scores_by_prompt(db, 1)
    assert len(scores) == 6 and any(score > 0 for score in scores.values())

    # Ctrl-C just after the second result is written: the answers then in flight still are.
    write = Run.add_eval_result
    written = []

    def ctrl_c_after_two(run, row, ignore=False):
        write(run, row, ignore)
        written.append(row["prompt_id"])
        if len(written) == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Run, "add_eval_result", ctrl_c_after_two)
        stopped = run_main("eval", *flags)
    assert stopped.returncode == 130
    kept = db["eval_results"].count_where("run_id = 2")
    assert 2 < kept < 6  # more than the two written before Ctrl-C, and not the whole suite
    assert (
        f"run 2 interrupted; kept {kept} of 6 results; `just eval resume=2` asks the rest"
    ) in stopped.stderr
    assert db.table("runs").get(2)["status"] == "interrupted"
    first_session = db.table("runs").get(2)["duration_s"]

    # A changed suite file is refused before anything is asked or written.
    suite.write_text(SUITE.replace("6 times 7", "7 times 6"))
    refused = run_main("eval", "resume=2")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: run 2 cannot be resumed: the suite file changed since it ran"
        " (a new `just eval` evaluates them as they are now)"
    )
    assert db["eval_results"].count_where("run_id = 2") == kept
    assert db["run_resumes"].count == 0 and db.table("runs").get(2)["status"] == "interrupted"

    suite.write_text(SUITE)  # the same content again: the same fingerprint
    resumed = run_main("eval", "resume=2", "concurrency=3")
    assert resumed.returncode == 0, resumed.stderr
    assert f"run 2: resuming: {kept} of 6 results kept, asking the other {6 - kept}" in (
        resumed.stderr
    )
    run = db.table("runs").get(2)
    assert run["status"] == "ok" and run["error"] is None and db["runs"].count == 2
    assert db["eval_results"].count_where("run_id = 2") == 6
    assert scores_by_prompt(db, 2) == scores  # temperature 0: as if never interrupted
    assert responses(db, 2) == responses(db, 1)
    [resume] = list(db["run_resumes"].rows)
    assert resume["run_id"] == 2 and resume["previous_status"] == "interrupted"
    assert resume["kept"] == kept and resume["resumed_at"] > run["started_at"]
    # Its duration is the two sessions', not the pause between them.
    session = datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(
        resume["resumed_at"]
    )
    assert run["duration_s"] == pytest.approx(first_session + session.total_seconds(), abs=0.01)
    # The CI covers all six results, as the uninterrupted run's does.
    summary, straight_summary = (json.loads(db.table("runs").get(i)["summary"]) for i in (2, 1))
    assert summary["overall_ci_low"] == straight_summary["overall_ci_low"]
    assert summary["overall_ci_high"] == straight_summary["overall_ci_high"]
    assert json.loads(run["config"])["concurrency"] == 3
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    entry = journal[journal.index("### Run 2: Eval") : journal.index("### Run 1: Eval")]
    assert f"UTC, after it was interrupted with {kept} results kept." in entry
    assert "[interrupted]" not in entry.splitlines()[0]

    again = run_main("eval", "resume=2")
    assert again.returncode == 1
    assert "run 2 finished (ok); there is nothing to resume" in again.stderr


def test_a_resume_names_every_part_that_changed():
    recorded = {"model": "a", "adapter": "b", "suite": "c", "sampling": "d", "chat_template": None}
    now = {**recorded, "model": "A", "sampling": "D"}
    assert changed_parts(recorded, now) == [
        "the model's weights or config",
        "the sampling settings",
    ]
    assert changed_parts(recorded, recorded) == []
    assert changed_parts(recorded, {**recorded, "scope": "x"}) == [
        "the prompt limit or exec setting"
    ]


def test_a_resume_takes_nothing_that_would_change_the_scores(isolated_ledger):
    result = run_main("eval", "resume=3", "suite=baseline", "temperature=0.7")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: --resume continues run 3 as it was recorded: --suite, --temperature cannot"
        " change (concurrency, timeout and port can)"
    )
    assert not isolated_ledger.exists()  # refused before the ledger is opened
    missing = run_main("eval", "resume=3")
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith("error: resume=3: the ledger has no run 3")
