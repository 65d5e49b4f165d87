"""Preference and GRPO data, the GRPO reward against the eval's scorer, and the mlx-lm-lora
CPU workaround: no training here (tests/test_preference.py trains)."""

import json
from pathlib import Path

import pytest

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.data.datacheck import check_dataset, require_trainable
from labbench.data.dummydata import write_dummy_data
from labbench.data.grpodata import load_grpo_file
from labbench.eval.prompting import finish_row
from labbench.eval.scoring import score_response
from labbench.eval.suitetypes import ExpectedCall, Prompt, Suite
from labbench.eval.toolcalls import extract_tool_calls
from labbench.record.ledger import open_ledger
from labbench.train.preference.rewards import RewardLog, format_reward

READ_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a text file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
}


def write_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_check_data_names_file_line_and_field_of_pairs_and_grpo_prompts(tmp_path):
    pair = {"prompt": "Read a.py", "chosen": "<tool_call>x</tool_call>", "rejected": "no"}
    write_lines(
        tmp_path / "dpo" / "train.jsonl",
        [
            pair,
            {**pair, "chosen": ""},
            {**pair, "rejected": pair["chosen"]},
            {"prompt": "x", "rejected": "y"},
        ],
    )
    write_lines(tmp_path / "dpo" / "valid.jsonl", [pair])
    train = tmp_path / "dpo" / "train.jsonl"
    assert check_dataset(tmp_path / "dpo") == [
        f"{train}:2: chosen: must be non-empty text",
        f"{train}:3: chosen: the same as rejected (nothing to prefer)",
        f"{train}:4: chosen: missing",
    ]
    grpo = {"prompt": "Read a.py", "tools": [READ_TOOL], "expect_tools": [{"name": "read_file"}]}
    write_lines(
        tmp_path / "grpo" / "train.jsonl",
        [
            grpo,
            {**grpo, "expect_tools": [{"name": "write_file"}]},
            {**grpo, "expect_answer": 3, "answer_regex": "3"},
            {**grpo, "expect_tests": "assert f(", "entry_point": "f"},
        ],
    )
    problems = check_dataset(tmp_path / "grpo", need_valid=False)
    file = tmp_path / "grpo" / "train.jsonl"
    assert problems == [
        f"{file}:2: line-2: expect_tools[0].name: no [tools.write_file] schema for 'write_file'",
        f"{file}:3: line-3: answer_regex: give expect_answer or answer_regex, not both",
        f"{file}:4: line-4: expect_tests: line 1: does not compile: '(' was never closed",
    ]


def test_train_refuses_a_format_the_method_cannot_train_on(tmp_path):
    pair = {"prompt": "Read a.py", "chosen": "yes", "rejected": "no"}
    for split in ("train", "valid"):
        write_lines(tmp_path / f"{split}.jsonl", [pair])
    require_trainable(tmp_path, method="dpo")
    with pytest.raises(UserError, match=r"train.jsonl:1: preference examples; --method grpo"):
        require_trainable(tmp_path, method="grpo")
    with pytest.raises(UserError, match=r"--method sft trains on chat examples"):
        require_trainable(tmp_path)


def test_dummy_pairs_are_deterministic_near_misses_the_scorer_ranks_below_chosen(tmp_path):
    first = write_dummy_data(tmp_path / "a", 60, seed=3, kind="dpo")
    again = write_dummy_data(tmp_path / "b", 60, seed=3, kind="dpo")
    assert first.fingerprint == again.fingerprint
    assert check_dataset(tmp_path / "a") == []
    pairs = [json.loads(line) for f in first.files for line in f.read_text().splitlines()]
    assert len(pairs) == 60
    kinds = set()
    for pair in pairs:
        chosen, rejected = extract_tool_calls(pair["chosen"]), extract_tool_calls(pair["rejected"])
        if not chosen:
            kinds.add("call where none was due")
            assert rejected and "<tool_call>" not in pair["chosen"]
        elif not rejected:
            kinds.add("prose")
        elif chosen[0].name != rejected[0].name:
            kinds.add("wrong tool")
        elif set(chosen[0].arguments) != set(rejected[0].arguments):
            kinds.add("missing argument")
        else:
            kinds.add("wrong argument")
            assert chosen[0].arguments != rejected[0].arguments
    assert kinds == {
        "call where none was due", "prose", "wrong tool", "missing argument", "wrong argument"
    }  # fmt: skip


def test_dummy_grpo_prompts_load_as_a_suite_with_their_expectations(tmp_path):
    report = write_dummy_data(tmp_path, 30, seed=0, kind="grpo")
    assert write_dummy_data(tmp_path / "again", 30, seed=0, kind="grpo").fingerprint == (
        report.fingerprint
    )
    suite = load_grpo_file(tmp_path / "train.jsonl")
    assert len(suite.prompts) == report.counts["train"]
    assert set(suite.tool_schemas) == {"read_file", "write_file", "run_command"}
    direct = [p for p in suite.prompts if p.expect_tools == ()]
    calling = [p for p in suite.prompts if p.expect_tools]
    assert direct and calling and len(direct) + len(calling) == len(suite.prompts)


def suite_of(*prompts: Prompt) -> Suite:
    schemas = {"read_file": {"description": "Read a text file", "parameters": {"type": "object"}}}
    return Suite("rewards", "", Path("rewards.jsonl"), prompts, schemas)


def prompt(id: str, **expect) -> Prompt:
    fields: dict = dict(
        expect_tools=None, expect_keywords=(), expect_answer=None, answer_regex=None
    )
    return Prompt(id, "c", "Read a.py", None, 64, ("read_file",), **(fields | expect))


CALL = '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>'
WRONG_PATH = CALL.replace("a.py", "b.py")
CODE = "```python\ndef add(a, b):\n    return a + b\n```"


def rewards_of(suite: Suite, prompt_ids: list[str], completions: list[str], tmp_path, **settings):
    db = open_ledger(tmp_path / "ledger.db")
    db.table("runs").insert({"id": 1, "kind": "train"}, ignore=True)
    log = RewardLog(db, 1, suite, LoraSettings(method="grpo", **settings), tokenizer=None)
    values = [f(prompt_ids, completions, prompt_ids) for f in log.functions()]
    return db, values


@pytest.mark.slow("a sandbox process per scored completion")
@pytest.mark.timeout(120)
def test_the_reward_is_the_eval_scorers_score(tmp_path):
    tools = prompt("tool", expect_tools=(ExpectedCall("read_file", {"path": "a.py"}),))
    tests = prompt(
        "add", expect_tools=None, expect_tests="assert add(2, 3) == 5", entry_point="add"
    )
    suite = suite_of(tools, tests)
    completions = [CALL, WRONG_PATH, "I would read it.", CODE, CODE.replace("a + b", "a - b")]
    ids = ["tool", "tool", "tool", "add", "add"]
    db, [score] = rewards_of(suite, ids, completions, tmp_path)
    assert score == [1.0, 0.5, 0.0, 1.0, 0.0]
    # What an eval records for the same answers (the server's text, scored by finish_row).
    prompts = {"tool": tools, "add": tests}
    for prompt_id, text, reward in zip(ids, completions, score, strict=True):
        calls = extract_tool_calls(text)
        row = {"response": text, "tool_calls": [c.__dict__ for c in calls], "finish_reason": "stop"}
        assert finish_row(suite, prompts[prompt_id], row)["score"] == reward
    assert score_response(tools, CALL, extract_tool_calls(CALL)).score == 1.0
    rollouts = list(db.query("SELECT * FROM rollouts ORDER BY id"))
    assert [r["score"] for r in rollouts] == score
    assert "tests 0.00: failed" in rollouts[4]["explanation"]
    [mean] = list(db.query("SELECT * FROM train_metrics"))
    assert mean["split"] == "step" and mean["name"] == "reward_score" and mean["value"] == 0.5


def test_format_reward_and_weights_are_recorded(tmp_path):
    assert format_reward(CALL) == 1.0
    assert format_reward("<tool_call>\n{broken") == 0.0
    assert format_reward("plain prose") == 1.0
    tools = prompt("tool", expect_tools=(ExpectedCall("read_file", {"path": "a.py"}),))
    _, values = rewards_of(
        suite_of(tools), ["tool", "tool"], [CALL, "<tool_call>{"], tmp_path,
        rewards=("score", "format"), reward_weights=(1.0, 0.25),
    )  # fmt: skip
    assert values == [[1.0, 0.0], [1.0, 0.0]]
    with pytest.raises(UserError, match="2 weights for 1 rewards"):
        rewards_of(suite_of(tools), [], [], tmp_path, reward_weights=(1.0, 2.0))


def test_cpu_device_info_supplies_the_missing_key_only_while_training():
    """mlx-lm-lora's DPO trainer reads a Mac-only key of mx.device_info() (upstream.py). When
    the first assertion fails, upstream reads it safely: delete cpu_device_info and this test."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm_lora.trainer.dpo_trainer import train_dpo

    from labbench.train.preference.upstream import WORKING_SET_KEY, cpu_device_info

    if WORKING_SET_KEY in mx.device_info():
        pytest.skip("this device has the key (Apple GPU): nothing to work around")
    model = nn.Linear(2, 2)
    with pytest.raises(KeyError, match=WORKING_SET_KEY):
        train_dpo(model, None, None, [], None)
    with cpu_device_info():
        assert mx.device_info()[WORKING_SET_KEY] == 0
        with pytest.raises(Exception) as later:  # past the key: fails on the missing optimizer
            train_dpo(model, None, None, [], None)
        assert not isinstance(later.value, KeyError)
    assert WORKING_SET_KEY not in mx.device_info()


def test_a_sweep_can_vary_the_method_and_its_settings(tmp_path):
    from labbench.sweep.sweepfile import checked_inputs, load_sweep, lora_settings

    write_dummy_data(tmp_path / "pairs", 20, seed=0, kind="dpo")
    sweep_file = tmp_path / "s.toml"
    text = """
data = "pairs"
suite = "baseline"
seeds = [0]
[train]
iters = 4
loss_type = "ipo"
[grid]
method = ["dpo", "orpo"]
beta = [0.1, 0.5]
"""
    sweep_file.write_text(text)
    sweep = load_sweep(sweep_file)
    trials = [lora_settings(sweep, c, 0) for c in sweep.configurations()]
    assert [(t.method, t.beta, t.loss_type) for t in trials] == [
        ("dpo", 0.1, "ipo"), ("dpo", 0.5, "ipo"), ("orpo", 0.1, "ipo"), ("orpo", 0.5, "ipo")
    ]  # fmt: skip
    checked_inputs(sweep)  # pairs suit both methods
    sweep_file.write_text(text.replace('"orpo"]', '"grpo"]'))
    with pytest.raises(UserError, match=r"grid.data|data: .*--method grpo trains on prompts"):
        checked_inputs(load_sweep(sweep_file))
    sweep_file.write_text(text.replace('"orpo"]', '"ppo"]'))
    with pytest.raises(UserError, match=r"grid.method: must be one of sft, dpo, orpo, grpo"):
        load_sweep(sweep_file)


def test_bench_measures_cpu_seconds_between_reports_without_warmup_and_last():
    from labbench.train.prefbench import measured

    reports = [
        (1, 9.0, 10.0, 100.0), (2, 2.0, 11.0, 200.0), (3, 3.0, 13.0, 400.0),
        (4, 4.0, 16.0, 700.0), (5, 8.0, 30.0, 800.0),
    ]  # fmt: skip
    # Iteration 1 is warm-up, 5 validates: iterations 2, 3, 4 cost 1, 2, 3 CPU seconds for
    # 100, 200, 300 tokens.
    assert measured(reports, warmup=1, iters=5) == {
        "wall": 3.0, "cpu": 2.0, "cpu_per_1k_tokens": 10.0
    }  # fmt: skip
    with pytest.raises(UserError, match="no iteration was measured"):
        measured(reports[:2], warmup=1, iters=2)
