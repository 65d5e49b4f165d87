"""HumanEval built in, and the self-check that lets users trust the executor: the canonical
solutions, replayed as chat answers by an OpenAI-compatible server over real HTTP, pass 164/164
in every form a chat model gives them, and the bare prompts pass none. The bare prompts are also
the unfenced answer that defines the entry point, the whole function's other form."""

import json

import pytest
from helpers import run_main
from sqlite_utils import Database

from labbench.eval.humaneval import ANSWER_FORMS, canonical_answers, humaneval_suite
from labbench.eval.suite import load_suite
from labbench.serving.replay import replay_server

ANSWERS = {form: canonical_answers(form) for form in ANSWER_FORMS}


@pytest.fixture(scope="module")
def server():
    with replay_server(lambda variant, question: ANSWERS[variant][question]) as base_url:
        yield base_url


@pytest.mark.slow("a sandbox process per HumanEval problem")
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("variant", "passed"),
    [
        ("body", 164),
        ("bare-prompt", 0),
        ("body-in-prose", 164),
        ("body-in-fence", 164),
        ("whole-function-in-prose", 164),
    ],
)
def test_canonical_solutions_pass_every_problem_and_bare_prompts_none(
    server, variant, passed, isolated_ledger
):
    result = run_main("eval", f"url={server}/{variant}/v1", "suite=humaneval")
    assert result.returncode == 0, result.stderr
    db = Database(isolated_ledger)
    verdicts = dict(
        db.execute(
            "SELECT tests_verdict, COUNT(*) FROM eval_results GROUP BY tests_verdict"
        ).fetchall()
    )
    assert verdicts.get("passed", 0) == passed, verdicts
    assert sum(verdicts.values()) == 164
    [overall] = db.execute("SELECT overall FROM eval_summaries").fetchone()
    assert overall == pytest.approx(passed / 164)
    [config] = db.execute("SELECT config FROM runs").fetchone()
    assert json.loads(config)["execution"]["enabled"] is True


def test_humaneval_is_built_in_from_the_packages_data_file():
    suite = load_suite("humaneval")
    assert suite == humaneval_suite()
    assert (suite.name, len(suite.prompts), suite.categories) == (
        "humaneval",
        164,
        ["code_generation"],
    )
    assert suite.path.name == "HumanEval.jsonl.gz" and suite.path.is_file()
    first = suite.prompts[0]
    assert (first.id, first.entry_point) == ("HumanEval/0", "has_close_elements")
    assert first.prompt.startswith("Complete the following Python function.")
    assert f"```python\n{first.code_prompt}```" in first.prompt
    assert first.expect_tests is not None
    assert first.expect_tests.rstrip().endswith("check(has_close_elements)")
    for prompt in suite.prompts:
        compile(prompt.expect_tests or "", prompt.id, "exec")


@pytest.mark.slow("a sandbox process per HumanEval problem")
@pytest.mark.timeout(300)
def test_limit_runs_the_first_problems_and_is_in_the_fingerprint(isolated_ledger):
    with replay_server(lambda variant, question: ANSWERS["body-in-fence"][question]) as url:
        assert run_main("eval", f"url={url}", "suite=humaneval", "limit=3").returncode == 0
        assert run_main("eval", f"url={url}", "suite=humaneval", "limit=2").returncode == 0
    db = Database(isolated_ledger)
    rows = db.execute("SELECT run_id, prompt_id, tests_verdict FROM eval_results ORDER BY id")
    by_run: dict[int, list[str]] = {}
    for run_id, prompt_id, verdict in rows.fetchall():
        assert verdict == "passed"
        by_run.setdefault(run_id, []).append(prompt_id)
    assert sorted(by_run[1]) == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert sorted(by_run[2]) == ["HumanEval/0", "HumanEval/1"]
    configs = [json.loads(c) for (c,) in db.execute("SELECT config FROM runs ORDER BY id")]
    assert [c["limit"] for c in configs] == [3, 2]
    fingerprints = {f for (f,) in db.execute("SELECT fingerprint FROM runs")}
    assert len(fingerprints) == 2
