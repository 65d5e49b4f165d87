"""Prompts that cannot fit the model's context are not sent, in any suite: counted with the
model's own tokenizer and chat template, tools included, plus max_tokens."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import run_main
from sqlite_utils import Database

from labbench.core.settings import SamplingSettings
from labbench.eval.evaluation import EvalPlan, prompts_too_long
from labbench.eval.suite import load_suite

LONG_WORDS = 5000  # far over the tiny model's 4096 positions

SUITE = f"""
name = "fit"
[tools.read_file]
description = "Read a text file."
parameters = {{ type = "object", properties = {{ path = {{ type = "string" }} }} }}
[[prompts]]
id = "short"
category = "reasoning"
prompt = "What is 6 times 7?"
expect_answer = "42"
max_tokens = 8
[[prompts]]
id = "long"
category = "reasoning"
prompt = "{" ".join(["word"] * LONG_WORDS)}"
expect_answer = "42"
max_tokens = 8
[[prompts]]
id = "medium"
category = "tool_calling"
prompt = "{" ".join(["word"] * 2000)} Read src/app.py."
tools = ["read_file"]
expect_tools = [ {{ name = "read_file", arguments = {{ path = "src/app.py" }} }} ]
max_tokens = 8
"""


def fit_suite(tmp_path: Path) -> Path:
    path = tmp_path / "fit.toml"
    path.write_text(SUITE)
    return path


def test_counted_with_the_models_tokenizer_template_and_tools(tiny_model, tmp_path):
    from mlx_lm.utils import load_tokenizer

    suite = load_suite(str(fit_suite(tmp_path)))
    plan = EvalPlan(suite=suite, model=str(tiny_model))
    too_long = prompts_too_long(plan)
    assert list(too_long) == ["long"]
    tokenizer = load_tokenizer(tiny_model)
    [long_prompt] = [p for p in suite.prompts if p.id == "long"]
    exact = len(
        tokenizer.apply_chat_template(
            suite.request_messages(long_prompt), add_generation_prompt=True, tokenize=True
        )
    )
    assert too_long["long"] == (exact, 8, 4096)
    # max_tokens counts too: with room for 3,000 answer tokens the medium prompt (its tool
    # schema in the template) no longer fits either.
    wider = replace(plan, sampling=SamplingSettings(max_tokens=3000))
    assert sorted(prompts_too_long(wider)) == ["long", "medium"]
    medium = prompts_too_long(wider)["medium"][0]
    [medium_prompt] = [p for p in suite.prompts if p.id == "medium"]
    with_tools = tokenizer.apply_chat_template(
        suite.request_messages(medium_prompt),
        tools=suite.request_tools(medium_prompt),
        add_generation_prompt=True,
        tokenize=True,
    )
    assert medium == len(with_tools) > 2000
    # A server given by url= has a tokenizer we cannot see: nothing is counted.
    assert prompts_too_long(replace(plan, url="http://127.0.0.1:9", model=None)) == {}


@pytest.mark.slow("starts mlx_lm.server with the tiny model")
@pytest.mark.timeout(300)
def test_a_prompt_too_long_is_not_sent_and_the_run_says_so(tiny_model, tmp_path, isolated_ledger):
    result = run_main("eval", f"model={tiny_model}", f"suite={fit_suite(tmp_path)}")
    assert result.returncode == 0, result.stderr
    assert "1 of 3 prompts are too long for the model's context: not sent" in result.stderr
    db = Database(isolated_ledger)
    rows = {row["prompt_id"]: row for row in db.query("SELECT * FROM eval_results")}
    long_row = rows["long"]
    assert long_row["error_kind"] == "too long for the model's context"
    assert long_row["score"] == 0.0
    assert long_row["response"] is None and long_row["finish_reason"] is None  # never asked
    assert long_row["prompt_tokens"] > 4096 - 8
    assert rows["short"]["finish_reason"] is not None  # the others were asked
    [config] = db.execute("SELECT config FROM runs").fetchone()
    assert json.loads(config)["too_long_prompts"] == 1
