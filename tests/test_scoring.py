import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labbench.eval.scoring import TESTS_NOT_RUN, PromptScore, failed_score, score_response
from labbench.eval.suitetypes import ExpectedCall, Prompt
from labbench.eval.toolcalls import ToolCall
from labbench.record.ledger import open_ledger, run_scores, start_run
from labbench.sandbox.execution import ExecutionResult


def make_prompt(
    expect_tools=None, expect_keywords=(), expect_answer=None, answer_regex=None, expect_tests=None
) -> Prompt:
    return Prompt(
        id="p",
        category="c",
        prompt="?",
        system=None,
        max_tokens=128,
        tools=("read_file", "write_file", "run_command"),
        expect_tools=expect_tools,
        expect_keywords=tuple(expect_keywords),
        expect_answer=expect_answer,
        answer_regex=answer_regex,
        expect_tests=expect_tests,
    )


def read(path, **extra) -> ToolCall:
    return ToolCall("read_file", {"path": path, **extra})


def expect_read(path) -> ExpectedCall:
    return ExpectedCall("read_file", {"path": path})


def tools_score(expected, made) -> PromptScore:
    return score_response(make_prompt(expect_tools=tuple(expected)), "", made)


# Tool calls


def test_full_match_earns_one():
    result = tools_score([expect_read("src/app.py")], [read("src/app.py")])
    assert result == PromptScore(
        1.0, {"tools": 1.0}, "tools 1.00: read_file(path='src/app.py') matched"
    )


def test_wrong_argument_earns_half_and_says_why():
    result = tools_score([expect_read("src/app.py")], [read("app.py")])
    assert result == PromptScore(
        0.5, {"tools": 0.5}, "tools 0.50: read_file called but path='app.py' != 'src/app.py'"
    )


def test_missing_argument_earns_half():
    result = tools_score([expect_read("src/app.py")], [ToolCall("read_file", {"file": "x"})])
    assert result.parts == {"tools": 0.5}
    assert result.explanation == "tools 0.50: read_file called but path missing"


def test_wrong_tool_earns_nothing():
    result = tools_score([expect_read("src/app.py")], [ToolCall("run_command", {"command": "cat"})])
    assert result.parts == {"tools": 0.0}
    assert result.explanation == "tools 0.00: read_file(path='src/app.py') not called"


def test_no_call_when_one_expected():
    result = tools_score([expect_read("src/app.py")], [])
    assert result.parts == {"tools": 0.0}
    assert result.explanation == "tools 0.00: no tool called; expected read_file(path='src/app.py')"


def test_strings_compared_after_trimming():
    assert tools_score([expect_read("src/app.py")], [read("  src/app.py\n")]).score == 1.0
    assert tools_score([expect_read("src/app.py")], [read("SRC/app.py")]).score == 0.5


@pytest.mark.parametrize(
    "expected, made, score",
    [
        (4, "4", 1.0),
        ("4", 4, 1.0),
        (4, 4.0, 1.0),
        (4, " 4.0 ", 1.0),
        ("10", "1e1", 1.0),
        (4, "5", 0.5),
        (4, "four", 0.5),
        (1, True, 0.5),  # a boolean is not the number 1
        (True, True, 1.0),
        ({"a": 1}, {"a": 1}, 1.0),
    ],
)
def test_numbers_compared_numerically(expected, made, score):
    call = ExpectedCall("run_command", {"timeout": expected})
    assert tools_score([call], [ToolCall("run_command", {"timeout": made})]).score == score


def test_list_in_suite_means_any_of_these_values():
    expected = ExpectedCall(
        "run_command", {"command": ["pytest", "pytest tests/", "python -m pytest"]}
    )
    for command in ["pytest", " pytest tests/ ", "python -m pytest"]:
        made = [ToolCall("run_command", {"command": command})]
        assert tools_score([expected], made).score == 1.0
    result = tools_score([expected], [ToolCall("run_command", {"command": "ls"})])
    assert result.score == 0.5
    assert result.explanation == (
        "tools 0.50: run_command called but command='ls' not in"
        " ['pytest', 'pytest tests/', 'python -m pytest']"
    )


def test_arguments_the_suite_does_not_list_are_ignored():
    assert (
        tools_score([expect_read("a.py")], [read("a.py", encoding="utf-8", lines=10)]).score == 1.0
    )
    assert tools_score([ExpectedCall("read_file", {})], [read("anything")]).score == 1.0


def test_spraying_calls_does_not_pay():
    made = [read("src/app.py"), read("other.py"), ToolCall("run_command", {"command": "ls"})]
    result = tools_score([expect_read("src/app.py")], made)
    assert result.score == pytest.approx(1 / 3)
    assert result.explanation == (
        "tools 0.33: read_file(path='src/app.py') matched; 3 calls made for 1 expected (x0.33)"
    )


def test_each_expected_call_needs_its_own_made_call():
    expected = [expect_read("a.py"), expect_read("b.py")]
    result = tools_score(expected, [read("a.py")])
    assert result.score == 0.5
    assert result.explanation == (
        "tools 0.50: read_file(path='a.py') matched; read_file(path='b.py') not called"
    )
    assert tools_score(expected, [read("b.py"), read("a.py")]).score == 1.0
    assert tools_score(expected, [read("a.py"), read("c.py")]).score == 0.75


def test_assignment_is_best_not_first_come():
    # Greedy in order would give the first expected call "x.py" and leave the second one half.
    expected = [ExpectedCall("read_file", {"path": ["x.py", "y.py"]}), expect_read("x.py")]
    assert tools_score(expected, [read("x.py"), read("y.py")]).score == 1.0
    assert tools_score(expected, [read("y.py"), read("x.py")]).score == 1.0


def test_multi_tool_prompt_in_any_order():
    expected = [expect_read("src/utils.py"), ExpectedCall("run_command", {"command": "pytest"})]
    made = [ToolCall("run_command", {"command": "pytest"}), read("src/utils.py")]
    result = tools_score(expected, made)
    assert result.score == 1.0
    assert result.explanation == (
        "tools 1.00: read_file(path='src/utils.py') matched; run_command(command='pytest') matched"
    )


def test_long_values_are_shortened_in_explanations():
    made = [ToolCall("write_file", {"path": "a.py", "content": "x" * 100})]
    result = tools_score([ExpectedCall("write_file", {"content": "y"})], made)
    assert result.explanation == (
        "tools 0.50: write_file called but content='xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... != 'y'"
    )


@settings(max_examples=300, deadline=None)
@given(
    expected=st.lists(
        st.tuples(st.sampled_from("ab"), st.lists(st.sampled_from("xyz"), min_size=1, max_size=2)),
        min_size=1,
        max_size=4,
    ),
    made=st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from("xyzw")), max_size=5),
)
def test_tool_score_equals_exhaustive_search(expected, made):
    """The matching in scoring.py finds the same total credit as trying every assignment."""

    def credit(want, call):
        if want[0] != call[0]:
            return 0.0
        return 1.0 if call[1] in want[1] else 0.5

    best = 0.0
    slots = list(range(len(made))) + [None] * len(expected)
    for chosen in itertools.permutations(slots, len(expected)):
        total = sum(
            credit(want, made[j]) for want, j in zip(expected, chosen, strict=True) if j is not None
        )
        best = max(best, total)
    oracle = best / len(expected) * min(1.0, len(expected) / len(made)) if made else 0.0

    expected_calls = [ExpectedCall(name, {"path": values}) for name, values in expected]
    made_calls = [ToolCall(name, {"path": value}) for name, value in made]
    assert tools_score(expected_calls, made_calls).score == pytest.approx(oracle)


def test_no_call_expected_and_none_made():
    result = tools_score([], [])
    assert result == PromptScore(1.0, {"tools": 1.0}, "tools 1.00: no tool called, as expected")


def test_no_call_expected_but_one_made():
    result = tools_score([], [read("README.md")])
    assert result == PromptScore(
        0.0, {"tools": 0.0}, "tools 0.00: expected no tool call, got read_file(path='README.md')"
    )


def test_tools_not_scored_when_not_expected():
    result = score_response(make_prompt(expect_answer="4"), "4", [read("x")])
    assert result.parts == {"answer": 1.0}
    assert result.score == 1.0


# Keywords


def test_keywords_match_on_word_boundaries():
    prompt = make_prompt(expect_keywords=["ls"])
    assert score_response(prompt, "I know some tools", []).parts == {"keywords": 0.0}
    assert score_response(prompt, "Run LS to list files", []).parts == {"keywords": 1.0}
    assert score_response(prompt, "run `ls -la`", []).parts == {"keywords": 1.0}


def test_keyword_with_symbols_matches_literally():
    prompt = make_prompt(expect_keywords=["O(log n)"])
    assert score_response(prompt, "It is o(LOG N) time.", []).score == 1.0
    assert score_response(prompt, "It is O(log  n) time.", []).score == 1.0
    assert score_response(prompt, "It is O(n) time.", []).score == 0.0
    assert score_response(prompt, "It is BigO(log n).", []).score == 0.0  # word end before "O"
    symbols = make_prompt(expect_keywords=["%", "[::-1]"])
    assert score_response(symbols, "n%2 and s[::-1]", []).score == 1.0


def test_keyword_share_and_explanation():
    prompt = make_prompt(expect_keywords=["def", "return", "reverse"])
    result = score_response(prompt, "def f(s):\n    return s[::-1]", [])
    assert result.score == pytest.approx(2 / 3)
    assert result.explanation == "keywords 0.67: found 'def', 'return'; missing 'reverse'"


def test_keywords_are_searched_in_tool_call_arguments_but_not_markup():
    prompt = make_prompt(expect_keywords=["def", "return", "tool_call"])
    call = ToolCall("write_file", {"path": "rev.py", "content": "def rev(s):\n    return s[::-1]"})
    content = '<tool_call>{"name": "write_file", "arguments": {}}</tool_call>'
    result = score_response(prompt, content, [call])
    assert result.explanation == "keywords 0.67: found 'def', 'return'; missing 'tool_call'"
    numbers = make_prompt(expect_keywords=["42"])
    assert score_response(numbers, "", [ToolCall("f", {"n": 42})]).score == 1.0


# Answers


@pytest.mark.parametrize(
    "content, score",
    [
        ("100", 1.0),
        ("25 x 4 = 100.", 1.0),
        ("The answer is 100.0", 1.0),
        ("**100**", 1.0),
        ("It is 1,000", 0.0),
        ("1000", 0.0),
        ("10", 0.0),
        ("v100", 0.0),
        ("100.5", 0.0),
        ("", 0.0),
    ],
)
def test_numeric_answer_compares_numbers(content, score):
    result = score_response(make_prompt(expect_answer="100"), content, [])
    assert result.parts == {"answer": score}


def test_numeric_answer_reads_thousands_separators_and_signs():
    assert score_response(make_prompt(expect_answer="1024"), "1,024", []).score == 1.0
    assert score_response(make_prompt(expect_answer="-3"), "x = -3", []).score == 1.0


def test_word_answer_is_a_whole_token():
    prompt = make_prompt(expect_answer="def")
    assert score_response(prompt, "Use `def`.", []).score == 1.0
    assert score_response(prompt, "Use DEF", []).score == 1.0
    assert score_response(prompt, "It is predefined", []).score == 0.0
    result = score_response(prompt, "lambda", [])
    assert result.explanation == "answer 0.00: 'def' not found in the answer"


def test_answer_is_searched_in_visible_text_only():
    prompt = make_prompt(expect_answer="100")
    content = '<tool_call>{"name": "run_command", "arguments": {"command": "echo 100"}}</tool_call>'
    assert score_response(prompt, content, []).score == 0.0


def test_answer_regex():
    prompt = make_prompt(answer_regex=r"range\(\s*1\s*,\s*11\s*\)")
    result = score_response(prompt, "[x * x for x in range(1, 11)]", [])
    assert result == PromptScore(
        1.0, {"answer": 1.0}, r"answer 1.00: /range\(\s*1\s*,\s*11\s*\)/ matched"
    )
    assert score_response(prompt, "[x * x for x in range(10)]", []).score == 0.0


# Whole prompts


def test_prompt_score_is_mean_of_parts():
    prompt = make_prompt(
        expect_tools=(), expect_keywords=["not found", "server"], expect_answer="404"
    )
    result = score_response(prompt, "404 means Not Found.", [])
    assert result.parts == {"tools": 1.0, "keywords": 0.5, "answer": 1.0}
    assert result.score == pytest.approx(2.5 / 3)
    assert result.explanation == (
        "tools 1.00: no tool called, as expected\n"
        "keywords 0.50: found 'not found'; missing 'server'\n"
        "answer 1.00: '404' found in the answer"
    )


def test_prompt_without_expectations_scores_zero():
    result = score_response(make_prompt(), "anything", [])
    assert result == PromptScore(0.0, {}, "nothing expected: scored 0")


def test_truncated_tool_call_is_flagged():
    prompt = make_prompt(expect_tools=(expect_read("src/app.py"),))
    result = score_response(prompt, '<tool_call>{"name": "read_file", "argum', [], "length")
    assert result.explanation == (
        "tools 0.00: no tool called; expected read_file(path='src/app.py')\n"
        "cut off by max_tokens: a tool call may have been dropped"
    )
    # mlx_lm drops a cut-off call from the text too: the content may hold nothing at all.
    result = score_response(prompt, "Let me read the file.", [], "length")
    assert result.explanation.endswith("\ncut off by max_tokens: a tool call may have been dropped")
    unclosed_without_expectation = make_prompt(expect_keywords=["x"])
    result = score_response(unclosed_without_expectation, "x <tool_call>{", [], "length")
    assert result.explanation.endswith("\ncut off by max_tokens: a tool call may have been dropped")


def test_truncation_without_a_call_at_stake_is_noted_plainly():
    result = score_response(make_prompt(expect_answer="4"), "Let me think about 4", [], "length")
    assert result.explanation == "answer 1.00: '4' found in the answer\ncut off by max_tokens"
    result = score_response(make_prompt(expect_tools=(expect_read("a"),)), "", [read("a")], "stop")
    assert "cut off" not in result.explanation


def test_failed_score():
    assert failed_score("timeout after 60 s") == PromptScore(
        0.0, {}, "request failed: timeout after 60 s"
    )


# Executed tests

TESTS = "assert add(2, 2) == 4"


def test_passed_tests_score_one_and_say_so():
    result = score_response(
        make_prompt(expect_tests=TESTS), "x", [], tests=ExecutionResult("passed", "", "", 0.1)
    )
    assert (result.score, result.parts, result.explanation) == (
        1.0,
        {"tests": 1.0},
        "tests 1.00: passed",
    )


@pytest.mark.parametrize(
    ("verdict", "detail"),
    [
        ("failed", "assert add(2, 2) == 4"),
        ("error", "NameError: name 'add' is not defined"),
        ("timed out", "no result within 10 s"),
        ("no code found", "the answer has no Python code"),
    ],
)
def test_tests_compose_with_keywords_as_one_more_part(verdict, detail):
    prompt = make_prompt(expect_keywords=["def add"], expect_tests=TESTS)
    tests = ExecutionResult(verdict, detail, "", 0.1)
    result = score_response(prompt, "def add(a, b): return a - b", [], tests=tests)
    assert result.score == 0.5
    assert result.parts == {"keywords": 1.0, "tests": 0.0}
    assert result.explanation.splitlines() == [
        "keywords 1.00: found 'def add'",
        f"tests 0.00: {verdict}: {detail}",
    ]


def test_tests_not_run_leave_a_tests_only_prompt_unscored_never_passed():
    result = score_response(make_prompt(expect_tests=TESTS), "def add(a, b): return a + b", [])
    assert (result.score, result.parts, result.explanation) == (None, {}, TESTS_NOT_RUN)
    assert TESTS_NOT_RUN == "tests not run (exec=false)"


def test_tests_not_run_score_a_prompt_on_its_other_parts_only():
    prompt = make_prompt(expect_answer="4", expect_tests=TESTS)
    result = score_response(prompt, "It returns 5.", [])
    assert (result.score, result.parts) == (0.0, {"answer": 0.0})
    assert result.explanation.splitlines() == [
        "answer 0.00: '4' not found in the answer",
        TESTS_NOT_RUN,
    ]


def test_a_long_failure_detail_is_one_shortened_line():
    tests = ExecutionResult("failed", "assert " + "x" * 500 + "\nsecond line", "", 0.1)
    result = score_response(make_prompt(expect_tests=TESTS), "", [], tests=tests)
    [line] = result.explanation.splitlines()
    assert line.startswith("tests 0.00: failed: assert xxx") and line.endswith("...")
    assert len(line) < 230


# Summary


def run_scores_of(ledger_path, rows: Sequence[tuple[str, float | None, bool]]) -> dict | None:
    """Record (category, score, ok) rows as the runner does (a failed request stores
    failed_score) and read the run's scores back from the ledger's views."""
    db = open_ledger(ledger_path)
    run = start_run(db, "eval", {})
    for index, (category, score, ok) in enumerate(rows):
        scored = PromptScore(score, {}, "") if ok else failed_score("HTTP 500")
        error = None if ok else "HTTP 500"
        row = {"prompt_id": f"p{index}", "category": category, "score": scored.score}
        run.add_eval_result(row | {"error": error})
    return run_scores(db, run.id)


def test_scores_match_the_reference_journal(isolated_ledger):
    scores = run_scores_of(
        isolated_ledger, [("reasoning", 0.5, True), ("code_generation", 1 / 3, True)]
    )
    assert scores is not None
    assert scores["overall"] == pytest.approx(0.41666, abs=1e-5)
    assert f"{scores['overall']:.1%}" == "41.7%"
    assert scores["categories"] == {"code_generation": pytest.approx(1 / 3), "reasoning": 0.5}
    assert (scores["success_rate"], scores["prompts"], scores["failures"]) == (1.0, 2, 0)


def test_overall_is_mean_of_categories_not_prompts(isolated_ledger):
    rows = [("a", 1.0, True), ("a", 1.0, True), ("a", 1.0, True), ("b", 0.0, True)]
    scores = run_scores_of(isolated_ledger, rows)
    assert scores is not None
    assert (scores["overall"], scores["success_rate"]) == (0.5, 1.0)
    assert scores["categories"] == {"a": 1.0, "b": 0.0}


def test_failed_prompts_count_zero(isolated_ledger):
    rows = [("b", 1.0, True), ("a", 0.9, False), ("a", 1.0, True), ("b", 0.5, True)]
    scores = run_scores_of(isolated_ledger, rows)
    assert scores is not None
    assert (scores["overall"], scores["success_rate"]) == (0.625, 0.75)
    assert scores["categories"] == {"a": 0.5, "b": 0.75}
    assert (scores["prompts"], scores["failures"]) == (4, 1)


def test_unscored_prompts_are_left_out_of_category_and_overall(isolated_ledger):
    rows = [("a", 1.0, True), ("a", None, True), ("b", None, True), ("c", 0.0, True)]
    scores = run_scores_of(isolated_ledger, rows)
    assert scores is not None
    assert scores["categories"] == {"a": 1.0, "b": None, "c": 0.0}
    assert (scores["overall"], scores["prompts"], scores["failures"]) == (0.5, 4, 0)


def test_a_run_without_results_has_no_scores(isolated_ledger):
    assert run_scores_of(isolated_ledger, []) is None
