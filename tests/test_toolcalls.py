import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labbench.eval.toolcalls import (
    ToolCall,
    decode_tool_calls,
    extract_tool_calls,
    has_unclosed_tool_call,
    visible_text,
)

READ_APP = ToolCall("read_file", {"path": "src/app.py"})
RUN_PYTEST = ToolCall("run_command", {"command": "pytest"})

QWEN3_READ_APP = """<tool_call>
<function=read_file>
<parameter=path>
src/app.py
</parameter>
</function>
</tool_call>"""


@pytest.mark.parametrize(
    "content",
    [
        '<tool_call>{"name": "read_file", "arguments": {"path": "src/app.py"}}</tool_call>',
        '<tool_call>\n{"name": "read_file", "parameters": {"path": "src/app.py"}}\n</tool_call>',
        # arguments as a JSON string
        '<tool_call>{"name": "read_file", "arguments": "{\\"path\\": \\"src/app.py\\"}"}'
        "</tool_call>",
        QWEN3_READ_APP,
        QWEN3_READ_APP.removeprefix("<tool_call>\n"),  # Qwen3 sometimes drops the opening tag
        '```json\n{"name": "read_file", "arguments": {"path": "src/app.py"}}\n```',
        '```\n[{"name": "read_file", "arguments": {"path": "src/app.py"}}]\n```',
        'I will read it: {"name": "read_file", "arguments": {"path": "src/app.py"}}',
        '{"type": "function",'
        ' "function": {"name": "read_file", "arguments": {"path": "src/app.py"}}}',
        '[TOOL_CALLS] [{"name": "read_file", "arguments": {"path": "src/app.py"}}]',
        '[TOOL_CALLS]read_file[ARGS]{"path": "src/app.py"}',
        '[TOOL_CALLS]read_file[CALL_ID]a1b2c3d4e[ARGS]{"path": "src/app.py"}',
    ],
)
def test_every_text_format_gives_the_call(content):
    assert extract_tool_calls(content) == [READ_APP]
    assert visible_text(content) == ("I will read it:" if content.startswith("I will") else "")
    assert has_unclosed_tool_call(content) is False


def test_qwen3_parameter_values_parse_as_json_when_they_can():
    content = (
        "<tool_call><function=edit><parameter=path> a b.py </parameter>"
        '<parameter=line>\n42\n</parameter><parameter=options>{"dry": true}</parameter>'
        "<parameter=flag>false</parameter><parameter=note>null</parameter>"
        "<parameter=text>not [json</parameter></function></tool_call>"
    )
    assert extract_tool_calls(content) == [
        ToolCall(
            "edit",
            {
                "path": "a b.py",
                "line": 42,
                "options": {"dry": True},
                "flag": False,
                "note": None,
                "text": "not [json",
            },
        )
    ]


def test_several_calls_in_one_block_list_and_text_order():
    content = (
        '<tool_call>{"name": "read_file", "arguments": {"path": "src/app.py"}}</tool_call>\n'
        '<tool_call>{"name": "run_command", "arguments": {"command": "pytest"}}</tool_call>'
    )
    assert extract_tool_calls(content) == [READ_APP, RUN_PYTEST]
    listed = (
        '[TOOL_CALLS] [{"name": "run_command", "arguments": {"command": "pytest"}}, '
        '{"name": "read_file", "arguments": {"path": "src/app.py"}}]'
    )
    assert extract_tool_calls(listed) == [RUN_PYTEST, READ_APP]
    mistral_named = (
        '[TOOL_CALLS]read_file[ARGS]{"path": "src/app.py"}'
        '[TOOL_CALLS]run_command[ARGS]{"command": "pytest"}'
    )
    assert extract_tool_calls(mistral_named) == [READ_APP, RUN_PYTEST]


def test_formats_mixed_in_one_text_keep_text_order():
    content = (
        '{"name": "run_command", "arguments": {"command": "pytest"}}\n'
        "<function=read_file><parameter=path>src/app.py</parameter></function>"
    )
    assert extract_tool_calls(content) == [RUN_PYTEST, READ_APP]


def test_unparseable_or_odd_arguments_become_empty_dict():
    assert extract_tool_calls('<tool_call>{"name": "f", "arguments": "{oops"}</tool_call>') == [
        ToolCall("f", {})
    ]
    assert extract_tool_calls('<tool_call>{"name": "f", "arguments": [1, 2]}</tool_call>') == [
        ToolCall("f", {})
    ]
    assert extract_tool_calls('<tool_call>{"name": "f"}</tool_call>') == [ToolCall("f", {})]


def test_objects_without_a_name_are_not_calls():
    for content in [
        '<tool_call>{"arguments": {"path": "a"}}</tool_call>',
        '<tool_call>{"name": "", "arguments": {}}</tool_call>',
        '<tool_call>{"name": 3, "arguments": {}}</tool_call>',
        '```json\n{"name": "  ", "arguments": {}}\n```',
        "<tool_call><function=><parameter=path>a</parameter></function></tool_call>",
    ]:
        assert extract_tool_calls(content) == []


def test_json_outside_markup_needs_arguments_to_be_a_call():
    answer = 'The record is ```json\n{"name": "Alice", "age": 3}\n``` and {"name": "Bob"}.'
    assert extract_tool_calls(answer) == []
    assert visible_text(answer) == answer


def test_code_fences_that_are_not_calls_stay_visible():
    answer = "Here:\n```python\ndef f(d):\n    return {k: v for k, v in d.items()}\n```"
    assert extract_tool_calls(answer) == []
    assert visible_text(answer) == answer


def test_api_tool_calls_are_read_with_tolerance():
    api = [
        {
            "id": "1",
            "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "src/app.py"}'},
        },
        {"function": {"name": "run_command", "arguments": {"command": "pytest"}}},
        {"function": {"name": "write_file"}},  # no arguments
        {"function": {"name": "broken", "arguments": "{not json"}},
        {"function": {"arguments": "{}"}},  # no name
        {"function": "read_file"},
        {"name": "plain", "arguments": {"x": 1}},  # not wrapped in "function"
        "read_file",
        None,
        42,
    ]
    assert extract_tool_calls(None, api) == [
        READ_APP,
        RUN_PYTEST,
        ToolCall("write_file", {}),
        ToolCall("broken", {}),
        ToolCall("plain", {"x": 1}),
    ]
    assert extract_tool_calls(None, {"function": {"name": "x"}}) == []  # ty: ignore[invalid-argument-type]


def test_api_and_text_calls_combine_without_exact_duplicates():
    api = [{"function": {"name": "read_file", "arguments": '{"path": "src/app.py"}'}}]
    text = (
        '<tool_call>{"name": "read_file", "arguments": {"path": "src/app.py"}}</tool_call>'
        '<tool_call>{"name": "read_file", "arguments": {"path": "other.py"}}</tool_call>'
        '<tool_call>{"name": "run_command", "arguments": {"command": "pytest"}}</tool_call>'
    )
    assert extract_tool_calls(text, api) == [
        READ_APP,
        ToolCall("read_file", {"path": "other.py"}),
        RUN_PYTEST,
    ]


def test_visible_text_removes_markup_and_keeps_prose():
    assert visible_text(f"Let me look.\n{QWEN3_READ_APP}\nDone.") == "Let me look.\n\n\nDone."
    assert visible_text("Answer: 4.\n<function=f>\n</function>\n</tool_call>") == "Answer: 4."
    assert visible_text("  plain answer \n") == "plain answer"
    assert visible_text(None) == ""
    # Words on either side of a removed call do not merge into one word.
    assert visible_text('a{"name": "f", "arguments": {}}b') == "a\nb"


@pytest.mark.parametrize(
    "content, unclosed",
    [
        ('<tool_call>{"name": "read', True),
        ('<tool_call>{"name": "read_file", "arguments": {"path": "a"}}', True),
        ("<tool_call>\n<function=read_file>\n<parameter=path>\nsrc/", True),
        ("<function=read_file>\n<parameter=path>\nsrc/", True),
        ('[TOOL_CALLS] [{"name": "read_file", "argu', True),
        ('[TOOL_CALLS]read_file[ARGS]{"pa', True),
        ('<tool_call>{"name": "f", "arguments": {}}</tool_call>', False),
        (QWEN3_READ_APP, False),
        ('{"name": "read', False),  # no tool-call markup
        ("plain answer", False),
        (None, False),
    ],
)
def test_has_unclosed_tool_call(content, unclosed):
    assert has_unclosed_tool_call(content) is unclosed


def test_cut_off_call_is_not_shown_as_text():
    assert extract_tool_calls('Sure.<tool_call>{"name": "read') == []
    assert visible_text('Sure.<tool_call>{"name": "read') == "Sure."
    assert visible_text('Sure. [TOOL_CALLS] [{"name": "re') == "Sure."


def test_a_degenerate_bracket_loop_is_read_quickly():
    content = "[" * 50_000 + '{"name": "read_file", "arguments": {"path": "src/app.py"}}'
    assert extract_tool_calls(content) == [READ_APP]


# Property tests: garbage in gives a list of well-formed calls, never an exception.

MARKUP = [
    "<tool_call>",
    "</tool_call>",
    "<function=read_file>",
    "<function=>",
    "</function>",
    "<parameter=path>",
    "</parameter>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "```json\n",
    "```",
    '{"name": "read_file", "arguments": ',
    '"parameters": ',
    '{"path": "a"}',
    "{",
    "}",
    "[",
    "]",
    '"',
    ",",
    "\\",
    "\n",
    "null",
    "1e999",
    "[" * 3000,
]
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_like = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["function", "name", "arguments", "parameters", "id", "x"])
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)
texts = st.text() | st.lists(st.sampled_from(MARKUP) | st.text(max_size=10), max_size=30).map(
    "".join
)
# Encoded calls with arbitrary names and arguments, to reach the code after a successful parse.
encoded_calls = json_like.map(lambda value: f"<tool_call>{json.dumps(value)}</tool_call>")


def assert_well_formed(calls):
    assert isinstance(calls, list)
    for call in calls:
        assert isinstance(call, ToolCall)
        assert isinstance(call.name, str) and call.name.strip()
        assert isinstance(call.arguments, dict)


@settings(max_examples=300, deadline=None)
@given(content=texts | encoded_calls | st.none(), api=st.none() | json_like | st.lists(json_like))
def test_never_raises_on_garbage(content, api):
    assert_well_formed(extract_tool_calls(content, api))
    assert isinstance(visible_text(content), str)
    assert isinstance(has_unclosed_tool_call(content), bool)


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(min_size=1).filter(str.strip),
    arguments=st.dictionaries(st.text(max_size=8), json_like, max_size=4),
    as_string=st.booleans(),
)
def test_any_encoded_call_round_trips(name, arguments, as_string):
    encoded = json.dumps(arguments) if as_string else arguments
    api = [{"function": {"name": name, "arguments": encoded}}]
    # "\u003c" keeps a "</tool_call>" inside a generated string from closing the block early.
    call_json = json.dumps({"name": name, "arguments": encoded}).replace("<", "\\u003c")
    text = f"<tool_call>{call_json}</tool_call>"
    for calls in (extract_tool_calls(None, api), extract_tool_calls(text)):
        assert_well_formed(calls)
        assert [call.name for call in calls] == [name.strip()]
        # NaN is not equal to itself, so compare the JSON spelling.
        assert json.dumps(calls[0].arguments) == json.dumps(arguments)


@pytest.mark.parametrize(
    ("content", "calls", "how"),
    [
        ('[read_file(path="src/app.py")]', [READ_APP], "text:pythonic"),
        (
            "Sure:\n[read_file(path='src/app.py'), run_command(command='pytest')]",
            [READ_APP, RUN_PYTEST],
            "text:pythonic",
        ),
        (
            "```python\n[math.factorial(n=5)]\n```",
            [ToolCall("math.factorial", {"n": 5})],
            "text:pythonic",
        ),
        (
            '[f(values=[1, [2]], options={"a": True})]',
            [ToolCall("f", {"values": [1, [2]], "options": {"a": True}})],
            "text:pythonic",
        ),
        (
            '<|python_tag|>{"name": "read_file", "parameters": {"path": "src/app.py"}}',
            [READ_APP],
            "text:llama",
        ),
        (
            '<|python_tag|>{"name": "read_file", "parameters": {"path": "src/app.py"}}; '
            '{"name": "run_command", "parameters": {"command": "pytest"}}',
            [READ_APP, RUN_PYTEST],
            "text:llama",
        ),
        (
            '<tool_call>{"name": "read_file", "arguments": {"path": "src/app.py"}}</tool_call>',
            [READ_APP],
            "text:hermes",
        ),
        (
            '[TOOL_CALLS] [{"name": "read_file", "arguments": {"path": "src/app.py"}}]',
            [READ_APP],
            "text:mistral",
        ),
        (QWEN3_READ_APP, [READ_APP], "text:qwen3-xml"),
        ('{"name": "read_file", "arguments": {"path": "src/app.py"}}', [READ_APP], "text:json"),
        ("No call here; a list [1, 2] and f(x) are not calls.", [], "none"),
    ],
)
def test_each_text_format_is_decoded_and_named(content, calls, how):
    assert decode_tool_calls(content) == (calls, how)


@pytest.mark.parametrize(
    "content",
    [
        "[read_file(open('x'))]",  # a positional argument
        "[read_file(path=open('x'))]",  # not a literal: never evaluated
        "[read_file(**kwargs)]",
        "[read_file(path='a'), 3]",
        "[" * 500 + "f(a=1" + "]" * 500,  # garbage stays cheap
    ],
)
def test_pythonic_text_that_is_not_literal_calls_gives_no_call(content):
    assert decode_tool_calls(content) == ([], "none")


def test_api_calls_and_text_calls_are_both_named_and_repeats_kept_when_asked():
    api = [{"function": {"name": "read_file", "arguments": '{"path": "src/app.py"}'}}]
    twice = '[run_command(command="pytest"), run_command(command="pytest")]'
    assert decode_tool_calls(twice, api) == ([READ_APP, RUN_PYTEST], "tool_calls+text:pythonic")
    kept = decode_tool_calls(twice, keep_repeats=True)
    assert kept == ([RUN_PYTEST, RUN_PYTEST], "text:pythonic")
