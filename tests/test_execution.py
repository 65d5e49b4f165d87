"""The executor: extracting code from answers, running it with tests, and its containment."""

import pytest

from labbench.execution import OUTPUT_CHARS, ExecutionResult, extract_code, run_tests

# ---------------------------------------------------------------------------------------------
# Extraction (pure functions)


def test_a_python_fence():
    answer = "Here you go:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nEnjoy."
    assert extract_code(answer, "add") == "def add(a, b):\n    return a + b\n"


@pytest.mark.parametrize("info", ["py", "Python", "python3", "", "python title=add.py"])
def test_fence_languages_taken_as_python(info):
    assert extract_code(f"```{info}\nx = 1\n```") == "x = 1\n"


def test_tilde_fence_and_indented_fence():
    assert extract_code("~~~python\nx = 1\n~~~") == "x = 1\n"
    assert extract_code("1. Write:\n   ```python\n   def f():\n       return 1\n   ```") == (
        "def f():\n    return 1\n"
    )


def test_other_languages_are_not_code():
    assert extract_code("Install it:\n```bash\npip install numpy\n```") is None


def test_the_block_defining_the_entry_point_wins():
    answer = (
        "A helper first:\n```python\ndef helper():\n    return 1\n```\n"
        "The function:\n```python\ndef solve(x):\n    return x * 2\n```\n"
        "Usage:\n```python\nprint(solve(3))\n```"
    )
    assert extract_code(answer, "solve") == "def solve(x):\n    return x * 2\n"


def test_the_last_block_defining_the_entry_point_wins():
    answer = (
        "```python\ndef solve(x):\n    return x\n```\nOops, fixed:\n"
        "```python\ndef solve(x):\n    return x * 2\n```"
    )
    assert extract_code(answer, "solve") == "def solve(x):\n    return x * 2\n"


def test_entry_point_as_assignment_or_class():
    answer = "```python\nimport math\n```\n```python\nsolve = lambda x: x\n```"
    assert extract_code(answer, "solve") == "solve = lambda x: x\n"
    answer = "```python\nx = 1\n```\n```python\nclass Solve:\n    pass\n```"
    assert extract_code(answer, "Solve") == "class Solve:\n    pass\n"


def test_without_an_entry_point_compiling_blocks_are_joined_in_order():
    answer = (
        "```python\ndef helper():\n    return 1\n```\nIt prints:\n```\n>>> solve()\n1\n```\n"
        "```python\ndef solve():\n    return helper()\n```"
    )
    joined = "def helper():\n    return 1\n\n\ndef solve():\n    return helper()\n"
    assert extract_code(answer) == joined
    # The entry point is named but no block defines it: the same rule.
    assert extract_code(answer, "missing") == joined


def test_unclosed_final_fence_runs_to_the_end():
    answer = "```python\ndef f():\n    return 1\n```\nBetter:\n```python\ndef g():\n    return"
    assert extract_code(answer, "g") == "def g():\n    return\n"


def test_bare_code_with_prose_around_it():
    answer = "Sure! Here it is.\n\ndef f(x):\n    return x + 1\n\n\nThis adds one to x."
    assert extract_code(answer, "f") == "def f(x):\n    return x + 1\n"
    assert extract_code("import math\n\nx = math.pi\n") == "import math\n\nx = math.pi\n"


@pytest.mark.parametrize(
    "answer",
    [None, "", "   ", "I cannot help with that.", "The answer is 42.", "```python\n\n```"],
)
def test_no_code(answer):
    assert extract_code(answer, "f") is None


def test_thinking_is_ignored():
    answer = (
        "<think>Maybe\n```python\ndef f():\n    return 0\n```\n</think>\n"
        "```python\ndef f():\n    return 1\n```"
    )
    assert extract_code(answer, "f") == "def f():\n    return 1\n"
    # The template opened the thinking: only its close is in the answer.
    assert extract_code("def f(): pass\n</think>\nNo code after all.") is None
    # Cut off while thinking.
    assert extract_code("<think>\ndef f():\n    return 0\n") is None


# ---------------------------------------------------------------------------------------------
# Verdicts (each starts a process)

ADD = "def add(a, b):\n    return a + b\n"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_passed():
    result = run_tests(ADD, "assert add(2, 2) == 4\nprint('checked')")
    assert (result.verdict, result.detail, result.passed) == ("passed", "", True)
    assert result.output == "checked\n"
    assert 0 < result.duration_s < 10


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_failed_shows_the_assert_line():
    result = run_tests(ADD, "assert add(1, 1) == 2\nassert add(2, 2) == 5, 'bad sum'\n")
    assert (result.verdict, result.detail) == ("failed", "assert add(2, 2) == 5, 'bad sum'")
    assert "AssertionError: bad sum" in result.output
    assert not result.passed


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_failed_inside_humaneval_check():
    tests = (
        "def check(candidate):\n    assert candidate(1, 2) == 3\n"
        "    assert candidate(2, 2) == 5\n\ncheck(add)\n"
    )
    result = run_tests(ADD, tests)
    assert (result.verdict, result.detail) == ("failed", "assert candidate(2, 2) == 5")


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "code, detail",
    [
        ("def add(a, b):\n    return a + c\n", "NameError: name 'c' is not defined"),
        ("def add(a, b)\n    return a + b\n", "SyntaxError: expected ':' (solution.py, line 1)"),
        ("import sys\nsys.exit(0)\n", "SystemExit: 0"),
        ("add = input()\n", "EOFError: EOF when reading a line"),
    ],
)
def test_error_shows_the_exception_type(code, detail):
    result = run_tests(code, "assert add(2, 2) == 4")
    assert (result.verdict, result.detail) == ("error", detail)
    assert detail.split(":")[0] in result.output


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_process_that_dies_is_an_error():
    result = run_tests("import os\nos._exit(3)\n", "")
    assert result.verdict == "error"
    assert result.detail == "the code under test exited with code 3 before the tests finished"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_output_is_truncated_keeping_head_and_tail():
    result = run_tests("print('x' * 100_000)\nraise ValueError('at the end')\n", "")
    assert result.verdict == "error"
    assert len(result.output) <= OUTPUT_CHARS
    assert result.output.startswith("xxx")
    assert result.output.endswith("ValueError: at the end\n")


def test_no_code_found_starts_nothing():
    result = run_tests(extract_code("I would rather not.", "add"), "assert add(2, 2) == 4")
    assert result == ExecutionResult("no code found", "the answer has no Python code", "", 0.0)
    assert not result.passed
