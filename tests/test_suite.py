import re
import textwrap

import pytest

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.core.paths import INVOCATION_DIR_ENV
from labbench.eval.suite import load_suite, resolve_suite_path
from labbench.eval.suitetypes import ExpectedCall, Prompt, SuiteError

HEADER = """\
name = "mini"
description = "A small suite"

[defaults]
system = "Be brief."
max_tokens = 64
tools = ["read_file", "run_command"]

[tools.read_file]
description = "Read a text file"
parameters = { type = "object", properties = { path = { type = "string" } }, required = ["path"] }

[tools.run_command]
description = "Run a shell command"
parameters = { type = "object", properties = { command = { type = "string" } } }
"""

READ_PROMPT = """\
[[prompts]]
id = "read"
category = "tool_calling"
prompt = "Read src/app.py"
expect_tools = [{ name = "read_file", arguments = { path = "src/app.py" } }]
"""


@pytest.fixture
def write_suite(tmp_path, monkeypatch):
    """Write suite.toml in a temporary working directory; messages then name "suite.toml"."""
    monkeypatch.chdir(tmp_path)

    def write(text: str) -> str:
        (tmp_path / "suite.toml").write_text(textwrap.dedent(text))
        return "suite.toml"

    return write


def load_error(write_suite, text: str) -> str:
    with pytest.raises(SuiteError) as caught:
        load_suite(write_suite(text))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_loads_prompts_with_defaults_and_overrides(write_suite, tmp_path):
    suite = load_suite(
        write_suite(
            HEADER
            + READ_PROMPT
            + """
            [[prompts]]
            id = "math"
            category = "reasoning"
            prompt = "What is 25 x 4?"
            system = "Answer with a number."
            max_tokens = 16
            tools = []
            expect_answer = 100
            expect_keywords = ["hundred"]

            [[prompts]]
            id = "none"
            category = "tool_calling"
            prompt = "What does HTTP status 404 mean?"
            tools = ["run_command"]
            expect_tools = []
            answer_regex = "(?i)not found"
            """
        )
    )
    assert (suite.name, suite.description) == ("mini", "A small suite")
    assert suite.path.resolve() == tmp_path / "suite.toml"
    assert suite.prompts == (
        Prompt(
            id="read",
            category="tool_calling",
            prompt="Read src/app.py",
            system="Be brief.",
            max_tokens=64,
            tools=("read_file", "run_command"),
            expect_tools=(ExpectedCall("read_file", {"path": "src/app.py"}),),
            expect_keywords=(),
            expect_answer=None,
            answer_regex=None,
        ),
        Prompt(
            id="math",
            category="reasoning",
            prompt="What is 25 x 4?",
            system="Answer with a number.",
            max_tokens=16,
            tools=(),
            expect_tools=None,
            expect_keywords=("hundred",),
            expect_answer="100",
            answer_regex=None,
        ),
        Prompt(
            id="none",
            category="tool_calling",
            prompt="What does HTTP status 404 mean?",
            system="Be brief.",
            max_tokens=64,
            tools=("run_command",),
            expect_tools=(),
            expect_keywords=(),
            expect_answer=None,
            answer_regex="(?i)not found",
        ),
    )
    assert suite.categories == ["tool_calling", "reasoning"]
    assert suite.request_tools(suite.prompts[1]) == []
    assert suite.request_tools(suite.prompts[0]) == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a text file",
                "parameters": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}},
                    "required": ["path"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "run_command",
                "description": "Run a shell command",
                "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
            },
        },
    ]


def test_name_defaults_to_file_stem_and_max_tokens_to_256(write_suite):
    suite = load_suite(
        write_suite(
            """
            [[prompts]]
            id = "a"
            category = "reasoning"
            prompt = "2 + 2?"
            expect_answer = "4"
            """
        )
    )
    assert (suite.name, suite.description, suite.tool_schemas) == ("suite", "", {})
    assert (suite.prompts[0].max_tokens, suite.prompts[0].tools, suite.prompts[0].system) == (
        256,
        (),
        None,
    )


def test_no_suite_file_takes_the_built_in_humaneval_name(write_suite, tmp_path):
    prompt = '[[prompts]]\nid = "a"\ncategory = "c"\nprompt = "2 + 2?"\nexpect_answer = "4"\n'
    message = load_error(write_suite, 'name = "humaneval"\n' + prompt)
    assert message == "suite.toml: name: humaneval is the built-in HumanEval suite's; name yours"
    (tmp_path / "humaneval.toml").write_text(prompt)  # its name would be the file's stem
    with pytest.raises(SuiteError, match="humaneval.toml: name: humaneval is the built-in"):
        load_suite("humaneval.toml")
    assert len(load_suite("humaneval").prompts) == 164  # the name alone is always the built-in


def test_an_expected_argument_list_is_kept_as_any_of(write_suite):
    suite = load_suite(
        write_suite(
            HEADER
            + """
            [[prompts]]
            id = "t"
            category = "tool_calling"
            prompt = "Run the tests"
            expect_tools = [
                { name = "run_command", arguments = { command = ["pytest", "python -m pytest"] } },
            ]
            """
        )
    )
    assert suite.prompts[0].expect_tools == (
        ExpectedCall("run_command", {"command": ["pytest", "python -m pytest"]}),
    )


PROMPT_ERRORS = [
    ("max_tokens = 0", "suite.toml: read: max_tokens: must be a positive integer, got 0"),
    ('max_tokens = "64"', "suite.toml: read: max_tokens: must be a positive integer, got '64'"),
    ("max_tokens = true", "suite.toml: read: max_tokens: must be a positive integer, got True"),
    (
        'expect_keywords = ["a", 3]',
        "suite.toml: read: expect_keywords: must be a list of strings",
    ),
    ('expect_keywords = "def"', "suite.toml: read: expect_keywords: must be a list of strings"),
    (
        'expect_keywords = [" "]',
        "suite.toml: read: expect_keywords: must not contain empty strings",
    ),
    (
        'expect_answer = "4"\nanswer_regex = "4"',
        "suite.toml: read: answer_regex: give expect_answer or answer_regex, not both",
    ),
    (
        'answer_regex = "(unclosed"',
        "suite.toml: read: answer_regex: invalid regex: missing ), unterminated subpattern"
        " at position 0",
    ),
    ('expect_answer = ""', "suite.toml: read: expect_answer: must not be empty"),
    ("system = 3", "suite.toml: read: system: must be a string, got an integer"),
    (
        'tools = ["read_file", "grep"]',
        "suite.toml: read: tools: no [tools.grep] schema for 'grep'",
    ),
    ('tools = ["read_file", "read_file"]', "suite.toml: read: tools: a tool is listed twice"),
    (
        "expect_tool = []",
        "suite.toml: read: expect_tool: unknown key (expected one of: id, category, prompt,"
        " system, max_tokens, tools, expect_tools, expect_keywords, expect_answer, answer_regex,"
        " expect_tests, entry_point)",
    ),
]


@pytest.mark.parametrize("extra_line, message", PROMPT_ERRORS)
def test_prompt_field_errors_name_file_prompt_and_field(write_suite, extra_line, message):
    assert load_error(write_suite, HEADER + READ_PROMPT + extra_line + "\n") == message


def prompt_with(expect_tools: str, tools: str = "") -> str:
    return (
        HEADER
        + f"""
[[prompts]]
id = "t"
category = "tool_calling"
prompt = "Do it"
{tools}
expect_tools = {expect_tools}
"""
    )


@pytest.mark.parametrize(
    "expect_tools, tools, message",
    [
        (
            '[{ name = "write_file" }]',
            "",
            "suite.toml: t: expect_tools[0].name: no [tools.write_file] schema for 'write_file'",
        ),
        (
            '[{ name = "run_command" }]',
            'tools = ["read_file"]',
            "suite.toml: t: expect_tools[0].name: 'run_command' is not offered to this prompt"
            " (tools)",
        ),
        (
            '[{ name = "read_file", arguments = { pth = "a" } }]',
            "",
            "suite.toml: t: expect_tools[0].arguments.pth: not a parameter of read_file"
            " (has: path)",
        ),
        ('[{ arguments = { path = "a" } }]', "", "suite.toml: t: expect_tools[0].name: missing"),
        ('["read_file"]', "", "suite.toml: t: expect_tools[0]: must be a table, got a string"),
        (
            '{ name = "read_file" }',
            "",
            "suite.toml: t: expect_tools: must be a list of {name, arguments} tables",
        ),
        (
            '[{ name = "read_file", args = {} }]',
            "",
            "suite.toml: t: expect_tools[0].args: unknown key (expected one of: name, arguments)",
        ),
        (
            '[{ name = "read_file", arguments = "a" }]',
            "",
            "suite.toml: t: expect_tools[0].arguments: must be a table, got a string",
        ),
    ],
)
def test_expected_call_errors(write_suite, expect_tools, tools, message):
    assert load_error(write_suite, prompt_with(expect_tools, tools)) == message


@pytest.mark.parametrize(
    "prompt, message",
    [
        ('category = "c"\nprompt = "p"\nexpect_answer = "4"', "suite.toml: prompt #2: id: missing"),
        (
            'id = ""\ncategory = "c"\nprompt = "p"\nexpect_answer = "4"',
            "suite.toml: prompt #2: id: must not be empty",
        ),
        (
            'id = 7\ncategory = "c"\nprompt = "p"\nexpect_answer = "4"',
            "suite.toml: prompt #2: id: must be a string, got an integer",
        ),
        (
            'id = "read"\ncategory = "c"\nprompt = "p"\nexpect_answer = "4"',
            "suite.toml: read: id: duplicate id",
        ),
        ('id = "x"\nprompt = "p"\nexpect_answer = "4"', "suite.toml: x: category: missing"),
        ('id = "x"\ncategory = "c"\nexpect_answer = "4"', "suite.toml: x: prompt: missing"),
        (
            'id = "x"\ncategory = "c"\nprompt = "p"\nexpect_keywords = []',
            "suite.toml: x: expects nothing: give expect_tools (may be []), expect_keywords,"
            " expect_answer, answer_regex or expect_tests",
        ),
    ],
)
def test_prompt_errors(write_suite, prompt, message):
    assert load_error(write_suite, f"{HEADER}{READ_PROMPT}\n[[prompts]]\n{prompt}\n") == message


@pytest.mark.parametrize(
    "text, message",
    [
        ("name = ", "suite.toml: bad TOML: Invalid value (at end of document)"),
        (HEADER, "suite.toml: no prompts (add [[prompts]] tables)"),
        ('prompts = "x"', "suite.toml: prompts: must be [[prompts]] tables"),
        (
            'title = "x"\n' + READ_PROMPT,
            "suite.toml: title: unknown key (expected one of: name, description, exec, defaults,"
            " tools, prompts)",
        ),
        (
            HEADER.replace("max_tokens = 64", "max_tokens = -1") + READ_PROMPT,
            "suite.toml: defaults.max_tokens: must be a positive integer, got -1",
        ),
        (
            HEADER.replace("max_tokens = 64", "max_token = 64") + READ_PROMPT,
            "suite.toml: defaults.max_token: unknown key (expected one of: system, max_tokens,"
            " tools)",
        ),
        (
            HEADER.replace('tools = ["read_file", "run_command"]', 'tools = ["shell"]')
            + READ_PROMPT,
            "suite.toml: defaults.tools: no [tools.shell] schema for 'shell'",
        ),
        (
            HEADER.replace('description = "Read a text file"\n', "") + READ_PROMPT,
            "suite.toml: tools.read_file.description: missing",
        ),
        (
            HEADER.replace('description = "Read a text file"', 'summary = "Read"') + READ_PROMPT,
            "suite.toml: tools.read_file.summary: unknown key (expected one of: description,"
            " parameters)",
        ),
        (
            HEADER.replace("parameters = { type", 'parameters = "x"\n# { type') + READ_PROMPT,
            "suite.toml: tools.read_file.parameters: must be a table, got a string",
        ),
        ("name = 3\n" + READ_PROMPT, "suite.toml: name: must be a string, got an integer"),
    ],
)
def test_suite_level_errors(write_suite, text, message):
    assert load_error(write_suite, text) == message


def test_suite_error_is_a_user_error():
    assert issubclass(SuiteError, UserError)


def test_resolve_suite_path(write_suite, tmp_path, monkeypatch):
    write_suite(HEADER + READ_PROMPT)
    # A relative path is from where the user ran `just` (the justfile passes it on).
    assert resolve_suite_path("suite.toml") == tmp_path / "suite.toml"
    monkeypatch.chdir(PROJECT_ROOT)
    monkeypatch.setenv(INVOCATION_DIR_ENV, str(tmp_path))
    assert resolve_suite_path("suite.toml") == tmp_path / "suite.toml"
    assert resolve_suite_path(str(tmp_path / "suite.toml")) == tmp_path / "suite.toml"
    assert resolve_suite_path("baseline") == PROJECT_ROOT / "suites" / "baseline.toml"
    assert resolve_suite_path("baseline.toml") == PROJECT_ROOT / "suites" / "baseline.toml"
    with pytest.raises(SuiteError) as caught:
        resolve_suite_path("no-such-suite")
    assert re.fullmatch(
        r"no suite 'no-such-suite': no such file in \S+ and no \S*suites/no-such-suite\.toml"
        r" \(available: (\S+, )*baseline(, \S+)*\)",
        str(caught.value),
    )
    with pytest.raises(SuiteError, match=r"^--suite \.: \S+ is a directory, not a suite file$"):
        resolve_suite_path(".")


# The shipped suite


def test_baseline_suite_loads_with_the_three_categories():
    suite = load_suite("baseline")
    assert suite.name == "baseline"
    assert len(suite.prompts) >= 30
    assert suite.categories == ["tool_calling", "code_generation", "reasoning"]
    counts = {c: sum(p.category == c for p in suite.prompts) for c in suite.categories}
    assert counts["tool_calling"] >= 12 and counts["code_generation"] >= 6
    assert counts["reasoning"] >= 6
    assert set(suite.tool_schemas) == {"read_file", "write_file", "run_command"}
    assert {p.max_tokens for p in suite.prompts} == {128}


def test_baseline_suite_has_no_call_and_multi_call_prompts():
    prompts = load_suite("baseline").prompts
    assert any(p.expect_tools == () for p in prompts)
    multi = [p for p in prompts if p.expect_tools and len(p.expect_tools) >= 2]
    assert any(len({call.name for call in p.expect_tools or ()}) >= 2 for p in multi)


def test_baseline_tool_arguments_appear_in_the_prompt_text():
    """A model can copy every expected argument from the prompt (some value of each list)."""
    for prompt in load_suite("baseline").prompts:
        for call in prompt.expect_tools or ():
            for name, accepted in call.arguments.items():
                values = accepted if isinstance(accepted, list) else [accepted]
                assert any(str(value) in prompt.prompt for value in values), (prompt.id, name)


CODE_PROMPT = """\
[[prompts]]
id = "add"
category = "code_generation"
prompt = "Write add(a, b)."
"""


def test_expect_tests_is_an_expectation_and_loads_with_its_entry_point(write_suite):
    suite = load_suite(
        write_suite(
            HEADER
            + CODE_PROMPT
            + """entry_point = "add"
            expect_tests = \"\"\"
            assert add(2, 2) == 4
            \"\"\"
            """
        )
    )
    [prompt] = suite.prompts
    assert (prompt.expect_tests, prompt.entry_point) == ("assert add(2, 2) == 4\n", "add")
    assert (prompt.expect_tools, prompt.expect_keywords, prompt.code_prompt) == (None, (), None)
    assert suite.exec_tests is True


def test_exec_false_in_a_suite_turns_execution_off(write_suite):
    text = "exec = false\n" + HEADER + CODE_PROMPT + 'expect_tests = "assert add(1, 1) == 2"\n'
    assert load_suite(write_suite(text)).exec_tests is False


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            'expect_tests = "assert add(2, 2) == 4\\nassert add(1 ==\\n"',
            "suite.toml: add: expect_tests: line 2: does not compile: '(' was never closed",
        ),
        (
            'expect_tests = "assert add(2, 2) == 4\\n  assert add(0, 0) == 0"',
            "suite.toml: add: expect_tests: line 2: does not compile: unexpected indent",
        ),
        ('expect_tests = ""', "suite.toml: add: expect_tests: must not be empty"),
        ("expect_tests = 4", "suite.toml: add: expect_tests: must be a string, got an integer"),
        (
            'entry_point = "add"\nexpect_keywords = ["def"]',
            "suite.toml: add: entry_point: goes with expect_tests",
        ),
        (
            'entry_point = "add me"\nexpect_tests = "assert True"',
            "suite.toml: add: entry_point: not a Python name: 'add me'",
        ),
    ],
)
def test_test_code_and_entry_point_errors_name_file_prompt_and_line(write_suite, fields, message):
    assert load_error(write_suite, HEADER + CODE_PROMPT + fields + "\n") == message


def test_exec_must_be_a_boolean(write_suite):
    text = 'exec = "no"\n' + HEADER + READ_PROMPT
    assert load_error(write_suite, text) == "suite.toml: exec: must be true or false, got a string"


def test_the_baseline_code_prompts_are_scored_by_tests():
    code = [p for p in load_suite("baseline").prompts if p.category == "code_generation"]
    assert code and all(prompt.expect_tests for prompt in code)
