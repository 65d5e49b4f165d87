"""Dummy data, dataset validation, the leakage check and the dataset fingerprint."""

import json
from pathlib import Path

import pytest

from labbench.core.errors import UserError
from labbench.data.datacheck import check_dataset, require_trainable
from labbench.data.dummydata import (
    DIRECT_SHARE,
    DataError,
    check_tool_calls_render,
    dummy_examples,
    write_dummy_data,
)
from labbench.data.leakage import find_leaks
from labbench.eval.suite import load_suite
from labbench.record.fingerprint import dataset_fingerprint

USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "hello"}


@pytest.fixture(scope="module")
def baseline():
    return load_suite("baseline")


def write_lines(path: Path, lines: list) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def call(name: str, **arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


# --- validation -------------------------------------------------------------------------------


def test_each_problem_is_reported_as_file_line_problem(tmp_path):
    train = write_lines(
        tmp_path / "train.jsonl",
        [
            {"messages": [USER, ASSISTANT]},
            "{not json",
            {"messages": [{"role": "robot", "content": "x"}, ASSISTANT]},
            {"messages": [{"role": "user", "content": "  "}, ASSISTANT]},
            {"messages": [USER]},
            "",
            ["a", "list"],
            {"messages": [USER, {"role": "assistant", "content": ""}]},
        ],
    )
    write_lines(tmp_path / "valid.jsonl", [{"messages": [USER, ASSISTANT]}])
    problems = check_dataset(tmp_path)
    assert problems == [
        f"{train}:2: bad JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{train}:3: message 1: role 'robot' is not one of system, user, assistant, tool",
        f"{train}:4: message 1: empty content",
        f"{train}:5: last message is 'user', not the assistant's (nothing to learn)",
        f"{train}:6: blank line (mlx-lm cannot read it)",
        f"{train}:7: not a JSON object",
        f"{train}:8: message 2: empty content",
    ]


def test_train_and_valid_are_required_and_no_split_file_may_be_empty(tmp_path):
    train, valid, test = (tmp_path / f"{name}.jsonl" for name in ("train", "valid", "test"))
    assert check_dataset(tmp_path) == [
        f"{train}: missing (the train split is required)",
        f"{valid}: missing (training validates on the valid split)",
    ]
    for file in (train, valid, test):
        file.write_text("")
    assert check_dataset(tmp_path) == [
        f"{train}:1: empty train split (no examples)",
        f"{valid}:1: empty valid split (no examples)",
        f"{test}:1: empty test split (no examples)",
    ]
    write_lines(train, [{"messages": [USER, ASSISTANT]}])
    test.unlink()
    assert check_dataset(tmp_path, need_valid=False) == [
        f"{valid}:1: empty valid split (no examples)"  # mlx-lm reads it when it is there
    ]
    valid.unlink()
    assert check_dataset(tmp_path, need_valid=False) == []


def test_valid_and_test_splits_are_checked_too(tmp_path):
    write_lines(tmp_path / "train.jsonl", [{"messages": [USER, ASSISTANT]}])
    valid = write_lines(tmp_path / "valid.jsonl", [{"messages": [ASSISTANT, USER]}])
    test = write_lines(tmp_path / "test.jsonl", ["{"])
    assert check_dataset(tmp_path) == [
        f"{valid}:1: last message is 'user', not the assistant's (nothing to learn)",
        f"{test}:1: bad JSON: Expecting property name enclosed in double quotes (column 2)",
    ]


def test_require_trainable_raises_the_first_problem_in_one_line(tmp_path):
    write_lines(tmp_path / "train.jsonl", [{"messages": [USER, ASSISTANT]}, "{", "["])
    with pytest.raises(UserError) as raised:
        require_trainable(tmp_path)
    assert str(raised.value) == (
        f"{tmp_path / 'train.jsonl'}:2: bad JSON: Expecting property name enclosed in double"
        f" quotes (column 2) (and 2 more; see `just check-data {tmp_path}`)"
    )
    with pytest.raises(UserError, match="a file; training takes a directory"):
        require_trainable(tmp_path / "train.jsonl")
    with pytest.raises(UserError, match="no such file or directory"):
        require_trainable(tmp_path / "nope")


def test_tool_calls_and_tools_are_checked(tmp_path):
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]
    good_call = {"role": "assistant", "content": "", "tool_calls": [call("read_file", path="a")]}
    data = write_lines(
        tmp_path / "one.jsonl",
        [
            {"messages": [USER, good_call], "tools": tools},
            {"messages": [USER, {**good_call, "tool_calls": [call("rm_rf")]}], "tools": tools},
            {
                "messages": [USER, {**good_call, "tool_calls": [{"function": {"arguments": "{"}}]}],
                "tools": tools,
            },
            {"messages": [{**USER, "tool_calls": []}, ASSISTANT]},
            {"messages": [USER, {"role": "system", "content": "late"}, ASSISTANT]},
        ],
    )
    assert check_dataset(data) == [
        f"{data}:2: message 2: tool call 1: 'rm_rf' is not among the example's tools",
        f"{data}:3: message 2: tool call 1: no function name",
        f"{data}:4: message 1: only assistant messages have tool_calls",
        f"{data}:5: message 2: a system message must come first",
    ]


def test_mixed_formats_and_other_mlx_lm_formats(tmp_path):
    data = write_lines(
        tmp_path / "mixed.jsonl",
        [
            {"prompt": "1 + 1", "completion": "2"},
            {"prompt": "2 + 2", "completion": ""},
            {"messages": [USER, ASSISTANT]},
            {"nothing": "here"},
        ],
    )
    assert check_dataset(data) == [
        f"{data}:2: empty completion",
        f"{data}:3: chat example in a completions file (mlx-lm reads every line in the first"
        " line's format)",
        f"{data}:4: no data: expected a messages list, prompt and completion, text,"
        " prompt/chosen/rejected, or prompt with expect_ keys",
    ]
    assert check_dataset(write_lines(tmp_path / "text.jsonl", [{"text": "a b c"}])) == []
    assert check_dataset(tmp_path / "nope.jsonl") == [
        f"{tmp_path / 'nope.jsonl'}: no such file or directory"
    ]


# --- dummy data -------------------------------------------------------------------------------


def test_dummy_data_is_deterministic_for_a_seed(tmp_path):
    first = write_dummy_data(tmp_path / "a", 120, seed=5)
    second = write_dummy_data(tmp_path / "b", 120, seed=5)
    other = write_dummy_data(tmp_path / "c", 120, seed=6)
    for split in ("train", "valid", "test"):
        a = (tmp_path / "a" / f"{split}.jsonl").read_bytes()
        assert a == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    assert first.fingerprint == second.fingerprint == dataset_fingerprint(tmp_path / "a")
    assert other.fingerprint != first.fingerprint
    assert first.counts == {"train": 96, "valid": 12, "test": 12}
    assert check_dataset(tmp_path / "a") == []


def test_about_a_third_are_direct_answers_with_the_same_tools_offered(baseline):
    examples = dummy_examples(400, seed=0, suites=[baseline])
    direct = [e for e in examples if not e["messages"][-1].get("tool_calls")]
    assert len(direct) / len(examples) == pytest.approx(DIRECT_SHARE, abs=0.01)
    assert all(e["messages"][-1]["content"].strip() for e in direct)
    suite_tools = baseline.request_tools(baseline.prompts[0])
    assert all(e["tools"] == suite_tools for e in examples)
    users = [e["messages"][-2]["content"] for e in examples]
    assert len(set(users)) == len(users)  # deduplicated before splitting


def test_tool_calls_use_the_suite_tools_and_their_parameters(baseline):
    schemas = baseline.tool_schemas
    names = set()
    for example in dummy_examples(400, seed=1, suites=[baseline]):
        assert example["messages"][0] == {"role": "system", "content": baseline.prompts[0].system}
        for tool_call in example["messages"][-1].get("tool_calls") or []:
            function = tool_call["function"]
            names.add(function["name"])
            properties = schemas[function["name"]]["parameters"]["properties"]
            assert set(function["arguments"]) == set(properties)
            assert all(isinstance(v, str) and v for v in function["arguments"].values())
    assert names == {"read_file", "write_file", "run_command"}


def test_self_check_passes_and_catches_calls_that_do_not_survive_the_template(baseline):
    examples = dummy_examples(200, seed=2, suites=[baseline])
    check_tool_calls_render(examples)  # no error
    twice = [call("read_file", path="a.py"), call("read_file", path="a.py")]
    broken = [{"messages": [USER, {"role": "assistant", "content": "", "tool_calls": twice}]}]
    with pytest.raises(DataError, match="self-check failed: example 1"):
        check_tool_calls_render(broken)


def test_mlx_lm_reads_the_data_and_masks_up_to_the_answer(tmp_path, tiny_model):
    from types import SimpleNamespace

    from mlx_lm.tuner.datasets import load_dataset
    from mlx_lm.utils import load_tokenizer

    write_dummy_data(tmp_path, 60, seed=0)
    tokenizer = load_tokenizer(tiny_model)
    config = SimpleNamespace(data=str(tmp_path), train=True, test=True, mask_prompt=True)
    train, valid, test = load_dataset(config, tokenizer)
    assert (len(train), len(valid), len(test)) == (48, 6, 6)
    calls = 0
    for index in range(len(train)):
        tokens, offset = train.process(train[index])
        answer = tokenizer.decode(tokens[offset:])
        assert 0 < offset < len(tokens) and answer.endswith("<|im_end|>\n")
        if train[index]["messages"][-1].get("tool_calls"):
            calls += 1
            # The answer says what it does, then calls: both are what the model learns.
            assert answer.startswith(("Reading", "Running", "Writing"))
            assert '\n<tool_call>\n{"name": "' in answer
    assert calls > 20


# --- leakage ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Read the file src/app.py and tell me what it does.",
        "  read the FILE src/app.py and tell me   what it does. ",  # case and whitespace
        "Read the file src/api.py and tell me what it does.",  # a path swapped
        "Hi! Read the file src/app.py and tell me what it does. I need it today, thanks.",
        "Context first. What is 25 x 4? Answer in one line.",  # a short prompt, whole
    ],
)
def test_leakage_check_catches_a_planted_near_copy(baseline, text):
    leaks = find_leaks(["Open lib/job.py.", text], [baseline])
    assert [(leak.index, leak.suite) for leak in leaks] == [(1, "baseline")]
    assert leaks[0].prompt_id in {"tool-read-app", "reason-multiply"}


def test_leakage_check_leaves_other_requests_alone(baseline):
    texts = ["Open lib/job.py.", "What is 31 + 9?", "Run pytest -q", "Read the docs."]
    assert find_leaks(texts, [baseline]) == []


def test_generated_data_never_leaks_and_a_leak_stops_the_writer(tmp_path, baseline):
    examples = dummy_examples(1500, seed=0, suites=[baseline])
    assert find_leaks([e["messages"][-2]["content"] for e in examples], [baseline]) == []
    # A suite asking exactly what the generator asks: nothing is written, the leak is named.
    planted = examples[0]["messages"][-2]["content"]
    suite = tmp_path / "planted.toml"
    suite.write_text(
        (Path(baseline.path).read_text(encoding="utf-8"))
        + f'\n[[prompts]]\nid = "planted"\ncategory = "x"\nprompt = {json.dumps(planted)}\n'
        + "expect_tools = []\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"leakage check failed: \d+ of 1500 .* ~ baseline/planted"):
        write_dummy_data(tmp_path / "out", 1500, seed=0, suite_paths=[suite])
    assert not (tmp_path / "out").exists()


def test_fingerprint_covers_names_and_contents(tmp_path):
    write_lines(tmp_path / "train.jsonl", [{"messages": [USER, ASSISTANT]}])
    before = dataset_fingerprint(tmp_path)
    (tmp_path / "train.jsonl").rename(tmp_path / "valid.jsonl")
    renamed = dataset_fingerprint(tmp_path)
    write_lines(tmp_path / "valid.jsonl", [{"messages": [USER, {**ASSISTANT, "content": "yo"}]}])
    assert len({before, renamed, dataset_fingerprint(tmp_path)}) == 3
