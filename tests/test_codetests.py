"""A suite's expect_tests through the whole path: how an answer becomes the program that runs,
and an eval over real HTTP (the replay server) that records verdicts, output and NULL scores."""

import json
import textwrap
import time
from dataclasses import replace

import pytest
from helpers import run_main
from sqlite_utils import Database

from labbench.eval import prompting
from labbench.eval.codetests import program_for
from labbench.eval.suitetypes import Prompt
from labbench.serving.replay import replay_server

SIGNATURE = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'


def code_prompt(code_prompt: str | None = SIGNATURE) -> Prompt:
    return Prompt(
        id="add",
        category="code_generation",
        prompt="Write add.",
        system=None,
        max_tokens=64,
        tools=(),
        expect_tools=None,
        expect_keywords=(),
        expect_answer=None,
        answer_regex=None,
        expect_tests="assert add(2, 3) == 5",
        entry_point="add",
        code_prompt=code_prompt,
    )


def test_without_a_code_prompt_the_program_is_the_extracted_code():
    answer = "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert program_for(code_prompt(None), answer) == "def add(a, b):\n    return a + b\n"
    assert program_for(code_prompt(None), "I cannot help with that.") is None


@pytest.mark.parametrize(
    "answer",
    [
        "    return a + b\n",  # HumanEval's own completion format
        "```python\n    return a + b\n```",
        "Here you go:\n```python\nreturn a + b\n```\nIt adds them.",  # a dedented body
    ],
)
def test_a_body_completes_the_code_prompt(answer):
    assert program_for(code_prompt(), answer) == SIGNATURE + "    return a + b\n"


def test_a_whole_function_runs_after_the_code_prompt_so_its_imports_and_helpers_exist():
    whole = "def add(a, b):\n    return a + b\n"
    assert program_for(code_prompt(), f"```python\n{whole}```") == f"{SIGNATURE}\n{whole}"


@pytest.mark.parametrize(
    "answer",
    [None, "", "   ", "\n\n", "Sorry", "I would rather not.", "return a +", "    return a +"],
)
def test_no_code_in_the_answer_is_none(answer):
    assert program_for(code_prompt(), answer) is None


SUITE = textwrap.dedent(
    '''
    name = "tested"
    [defaults]
    max_tokens = 64
    [[prompts]]
    id = "add"
    category = "code_generation"
    prompt = "Write add(a, b)."
    entry_point = "add"
    expect_tests = """
        assert add(2, 3) == 5
        assert add(-1, 1) == 0
        """
    [[prompts]]
    id = "sub"
    category = "code_generation"
    prompt = "Write sub(a, b)."
    expect_keywords = ["def sub"]
    expect_tests = "assert sub(5, 3) == 2, 'sub(5, 3) is not 2'"
    [[prompts]]
    id = "loop"
    category = "code_generation"
    prompt = "Write wait()."
    expect_tests = "wait()"
    [[prompts]]
    id = "prose"
    category = "code_generation"
    prompt = "Write mul(a, b)."
    expect_tests = "assert mul(2, 3) == 6"
    [[prompts]]
    id = "math"
    category = "reasoning"
    prompt = "What is 6 times 7?"
    expect_answer = "42"
    '''
)
ANSWERS = {
    "Write add(a, b).": "```python\ndef add(a, b):\n    print('adding')\n    return a + b\n```",
    "Write sub(a, b).": "```python\ndef sub(a, b):\n    return b - a\n```",
    "Write wait().": "```python\ndef wait():\n    while True:\n        pass\n```",
    "Write mul(a, b).": "Multiply them with the * operator.",
    "What is 6 times 7?": "42",
}


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "tested.toml"
    path.write_text(SUITE)
    return path


@pytest.fixture
def server():
    with replay_server(lambda variant, question: ANSWERS[question]) as base_url:
        yield base_url


def results(ledger, run_id: int) -> dict[str, dict]:
    rows = Database(ledger).query("SELECT * FROM eval_results WHERE run_id = ?", [run_id])
    return {row["prompt_id"]: row for row in rows}


@pytest.mark.slow("a sandbox process per generated answer")
@pytest.mark.timeout(120)
def test_an_eval_records_each_verdict_with_its_output_and_exec_false_leaves_them_unscored(
    server, suite_file, isolated_ledger, monkeypatch
):
    quick = replace(prompting.DEFAULTS, tests_timeout_s=2.0)  # the endless loop's timeout
    monkeypatch.setattr(prompting, "DEFAULTS", quick)
    ran = run_main("eval", f"url={server}", f"suite={suite_file}")
    assert ran.returncode == 0, ran.stderr
    rows = results(isolated_ledger, 1)
    verdicts = {prompt_id: row["tests_verdict"] for prompt_id, row in rows.items()}
    assert verdicts == {
        "add": "passed",
        "sub": "failed",
        "loop": "timed out",
        "prose": "no code found",
        "math": None,
    }
    assert rows["add"]["tests_output"] == "adding\nadding\n"  # once per assert
    assert (rows["add"]["score"], rows["sub"]["score"], rows["math"]["score"]) == (1.0, 0.5, 1.0)
    keywords, tests = rows["sub"]["explanation"].splitlines()
    assert keywords == "keywords 1.00: found 'def sub'"
    assert tests.startswith("tests 0.00: failed: ") and "sub(5, 3) is not 2" in tests
    assert rows["loop"]["explanation"].startswith("tests 0.00: timed out")
    assert rows["prose"]["explanation"].startswith("tests 0.00: no code found")
    [run] = Database(isolated_ledger).query("SELECT config FROM runs WHERE id = 1")
    execution = json.loads(run["config"])["execution"]
    assert execution["enabled"] is True and "separate process" in execution["containment"]

    off = run_main("eval", f"url={server}", f"suite={suite_file}", "exec=false")
    assert off.returncode == 0, off.stderr
    rows = results(isolated_ledger, 2)
    assert {prompt_id: row["score"] for prompt_id, row in rows.items()} == {
        "add": None,
        "sub": 1.0,
        "loop": None,
        "prose": None,
        "math": 1.0,
    }
    assert rows["add"]["explanation"] == "tests not run (exec=false)"
    assert all(row["tests_verdict"] is None for row in rows.values())
    db = Database(isolated_ledger)
    [run] = db.query("SELECT config, fingerprint FROM runs WHERE id = 2")
    assert json.loads(run["config"])["execution"] == {"enabled": False}
    [first] = db.query("SELECT fingerprint FROM runs WHERE id = 1")
    assert run["fingerprint"] != first["fingerprint"]
    [summary] = db.query("SELECT overall FROM eval_summaries WHERE run_id = 2")
    assert summary["overall"] == 1.0  # code_generation from sub alone, reasoning from math
    # The report marks unscored prompts and shows the verdicts; the journal renders.
    report = (isolated_ledger.parent / "journal" / "reports" / "1.html").read_text()
    assert "tests 0.00: failed: " in report and "sub(5, 3) is not 2" in report
    assert "<summary>test output</summary><pre>adding" in report
    unscored = (isolated_ledger.parent / "journal" / "reports" / "2.html").read_text()
    assert 'class="num score unscored">—</td>' in unscored
    assert (isolated_ledger.parent / "journal" / "JOURNAL.md").is_file()

    compared = run_main("compare", "1", "2")
    assert compared.returncode == 0, compared.stderr
    assert "comparing the 2 prompts both runs scored, left out 3 unscored" in compared.stdout


@pytest.mark.slow("a sandbox process per generated answer")
@pytest.mark.timeout(60)
def test_exec_false_in_the_suite_and_exec_true_on_the_command_line(
    server, suite_file, isolated_ledger
):
    suite_file.write_text("exec = false\n" + SUITE)
    assert run_main("eval", f"url={server}", f"suite={suite_file}", "limit=1").returncode == 0
    assert (
        run_main("eval", f"url={server}", f"suite={suite_file}", "limit=1", "exec=true").returncode
        == 0
    )
    assert results(isolated_ledger, 1)["add"]["score"] is None
    assert results(isolated_ledger, 2)["add"]["tests_verdict"] == "passed"


def test_a_bad_exec_word_is_a_one_line_error():
    result = run_main("eval", "url=http://127.0.0.1:9", "exec=maybe")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: argument --exec: expected true or false, got 'maybe' (see --help)"
    ]


@pytest.mark.slow("a sandbox process per generated answer")
@pytest.mark.timeout(60)
def test_requests_go_on_while_tests_run(tmp_path, isolated_ledger):
    """One request thread: if it ran the tests itself, request n + 1 would wait for test n."""
    prompts = [
        f'[[prompts]]\nid = "p{n}"\ncategory = "c"\nprompt = "p{n}"\nexpect_tests = "nap()"\n'
        for n in range(6)
    ]
    (tmp_path / "naps.toml").write_text('name = "naps"\n' + "".join(prompts))
    asked: list[float] = []
    nap = "import time\ndef nap():\n    print(time.time())\n    time.sleep(1)\n"
    nap += "    print(time.time())\n"

    def answer(variant: str, question: str) -> str:
        asked.append(time.time())  # the wall clock, which the sandbox shares
        return f"```python\n{nap}```"

    with replay_server(answer) as url:
        ran = run_main("eval", f"url={url}", f"suite={tmp_path / 'naps.toml'}", "concurrency=1")
    assert ran.returncode == 0, ran.stderr
    rows = list(Database(isolated_ledger)["eval_results"].rows)
    assert [row["tests_verdict"] for row in rows] == ["passed"] * 6
    naps = [tuple(map(float, row["tests_output"].split())) for row in rows]
    assert all(end - start >= 1 for start, end in naps)  # each test really napped
    # The six requests, sent one after another by one thread, were all answered before the
    # first nap ended: the thread did not wait for any test. By the clocks, not a time limit.
    assert len(asked) == 6 and asked[-1] < min(end for _, end in naps)
