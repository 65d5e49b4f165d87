"""GRPO data: prompts with the expectations a suite prompt has, so a sampled completion is scored
by the function that scores an eval (eval/scoring.py; train/preference/rewards.py).

One JSON object per line of train.jsonl (valid.jsonl and test.jsonl are optional):

    {"prompt": "Read the file src/app.py.", "system": "...",
     "tools": [{"type": "function", "function": {"name": "read_file", ...}}],
     "expect_tools": [{"name": "read_file", "arguments": {"path": "src/app.py"}}]}

The keys are a suite prompt's (expect_tools, expect_keywords, expect_answer, answer_regex,
expect_tests with entry_point; id and category are optional), plus the tools to offer in
OpenAI form, as in chat data. A file of them loads as a Suite, so eval and training share one
scorer; `data=suite:NAME` trains on a suite file's prompts directly.
"""

import json
from pathlib import Path

from labbench.core.errors import UserError
from labbench.eval.suite import load_suite, prompt_from_table, tool_schemas_of
from labbench.eval.suitetypes import Prompt, Suite

SUITE_PREFIX = "suite:"
EXPECT_KEYS = ("expect_tools", "expect_keywords", "expect_answer", "answer_regex", "expect_tests")
DEFAULT_CATEGORY = "grpo"


def is_grpo_example(example: dict) -> bool:
    return "prompt" in example and any(key in example for key in EXPECT_KEYS)


def grpo_prompt(example: dict, where: str, line: int) -> tuple[Prompt, dict[str, dict]]:
    """The example as a suite Prompt and the tool schemas it offers; UserError naming
    `where` (file:line) and the field otherwise."""
    raw = dict(example)
    schemas = tool_schemas_of(_schema_tables(raw.pop("tools", None), where), where)
    raw.setdefault("id", f"line-{line}")
    raw.setdefault("category", DEFAULT_CATEGORY)
    raw["tools"] = list(schemas)
    return prompt_from_table(raw, where, schemas), schemas


def _schema_tables(tools: object, where: str) -> dict:
    """OpenAI tools ([{"type": "function", "function": {...}}]) as suite [tools.NAME] tables."""
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise UserError(f"{where}: tools: must be a list of OpenAI tool objects")
    tables = {}
    for number, tool in enumerate(tools, start=1):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not str(function.get("name", "")).strip():
            raise UserError(f"{where}: tools[{number}]: no function name")
        tables[function["name"]] = {k: v for k, v in function.items() if k != "name"}
    return tables


def load_grpo_file(file: Path) -> Suite:
    """A GRPO JSONL file as a Suite (one prompt per line). UserError names file:line: field."""
    prompts: list[Prompt] = []
    schemas: dict[str, dict] = {}
    seen: set[str] = set()
    lines = Path(file).read_text(encoding="utf-8").splitlines()
    for number, text in enumerate(lines, start=1):
        where = f"{file}:{number}"
        try:
            example = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{where}: bad JSON: {error.msg} (column {error.colno})") from None
        if not isinstance(example, dict) or not is_grpo_example(example):
            raise UserError(f"{where}: not a GRPO example: give prompt and an expect_ key")
        prompt, offered = grpo_prompt(example, where, number)
        if prompt.id in seen:
            raise UserError(f"{where}: id: {prompt.id!r} is used by an earlier line")
        seen.add(prompt.id)
        for name, schema in offered.items():
            if schemas.setdefault(name, schema) != schema:
                raise UserError(f"{where}: tools: {name} differs from an earlier line's schema")
        prompts.append(prompt)
    if not prompts:
        raise UserError(f"{file}:1: no examples")
    return Suite(Path(file).parent.name, "GRPO data", Path(file), tuple(prompts), schemas)


def suite_file(data: str) -> Path | None:
    """The suite file `data=suite:NAME` names (None for any other data)."""
    if not data.startswith(SUITE_PREFIX):
        return None
    return load_suite(data[len(SUITE_PREFIX) :]).path


def grpo_splits(data: Path) -> tuple[Suite, Suite | None]:
    """The train split (and valid, when there is one) of `data`: a directory of GRPO JSONL,
    or a suite file (`data=suite:NAME`), whose prompts are the train split."""
    if Path(data).is_file():
        return load_suite(str(data)), None
    directory = Path(data)
    valid = directory / "valid.jsonl"
    return load_grpo_file(directory / "train.jsonl"), (
        load_grpo_file(valid) if valid.is_file() else None
    )
