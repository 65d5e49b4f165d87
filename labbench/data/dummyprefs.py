"""Dummy chat examples (labbench/data/dummydata.py) turned into preference pairs or GRPO prompts.

- kind=dpo: {"prompt", "system", "tools", "chosen", "rejected"}. Chosen is the example's answer,
  the right call (or the direct answer when no tool is due); rejected is a near miss: a wrong
  tool, a wrong or missing argument, prose instead of the call, or a call where none was due.
  Both are the assistant's text as the chat template renders it (a call as
  <tool_call>{json}</tool_call>), so mlx-lm-lora's string format holds them. Every pair is
  checked with the eval's scorer: chosen scores 1, rejected less, or nothing is written.
- kind=grpo: {"prompt", "system", "tools", "expect_tools"}: the calls the answer makes ([] for
  a direct answer), which the eval's scorer checks (labbench/data/grpodata.py).
Pure Python: no mlx here.
"""

import random

from labbench.core.errors import UserError
from labbench.eval.scoring import score_response
from labbench.eval.suitetypes import ExpectedCall, Prompt
from labbench.eval.toolcalls import extract_tool_calls
from labbench.tiny.chattemplate import render_chat
from labbench.tiny.corpus import random_command, random_content, random_path

KINDS = ("chat", "dpo", "grpo")
END_OF_TURN = "<|im_end|>\n"
NEAR_MISSES = ("wrong tool", "wrong argument", "missing argument", "prose instead of a call")


def as_kind(example: dict, kind: str, seed: int) -> dict:
    """A chat example as a line of `kind` data (the chat example itself for kind=chat)."""
    if kind == "chat":
        return example
    *context, answer = example["messages"]
    system = next((m["content"] for m in context if m["role"] == "system"), None)
    user = next(m["content"] for m in context if m["role"] == "user")
    head = {"prompt": user, **({"system": system} if system else {}), "tools": example["tools"]}
    if kind == "grpo":
        calls = [c["function"] for c in answer.get("tool_calls") or []]
        return head | {
            "expect_tools": [{"name": c["name"], "arguments": c["arguments"]} for c in calls]
        }
    rng = random.Random(f"near-miss-{seed}-{user}")
    rejected, miss = near_miss(answer, rng)
    pair = head | {
        "chosen": assistant_text(context, answer, example["tools"]),
        "rejected": assistant_text(context, rejected, example["tools"]),
    }
    check_pair(pair, answer, miss)
    return pair


def assistant_text(context: list[dict], answer: dict, tools: list[dict]) -> str:
    """The assistant's turn as the chat template writes it, without its end-of-turn marker."""
    prompt = render_chat(context, tools=tools, add_generation_prompt=True)
    full = render_chat([*context, answer], tools=tools)
    if not full.startswith(prompt) or not full.endswith(END_OF_TURN):
        raise UserError("dummy data: the chat template does not render the answer after the prompt")
    return full[len(prompt) : -len(END_OF_TURN)]


def near_miss(answer: dict, rng: random.Random) -> tuple[dict, str]:
    """A rejected answer close to `answer`, and which kind of miss it is."""
    calls = answer.get("tool_calls") or []
    if not calls:
        command = random_command(rng)
        call = _call("run_command", {"command": command})
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [call],
        }, "a call where none was due"
    miss = rng.choice(NEAR_MISSES)
    if miss == "prose instead of a call":
        return {"role": "assistant", "content": answer["content"]}, miss
    first = calls[0]["function"]
    name, arguments = first["name"], dict(first["arguments"])
    if miss == "wrong tool":
        target = arguments.get("path") or arguments.get("command", "")
        if name == "run_command":
            name, arguments = "read_file", {"path": target.split()[-1]}
        else:
            name, arguments = "run_command", {"command": f"cat {target}"}
    elif miss == "wrong argument":
        key = rng.choice(sorted(arguments))
        other = {"path": random_path, "command": random_command, "content": random_content}[key]
        value = arguments[key]
        while value == arguments[key]:
            value = other(rng)
        arguments[key] = value
    else:
        arguments.pop(rng.choice(sorted(arguments)))
    calls = [_call(name, arguments), *calls[1:]]
    return {"role": "assistant", "content": answer["content"], "tool_calls": calls}, miss


def check_pair(pair: dict, answer: dict, miss: str) -> None:
    """The eval's scorer must rate chosen 1 and rejected lower, or the pair teaches nothing."""
    expected = tuple(
        ExpectedCall(c["function"]["name"], dict(c["function"]["arguments"]))
        for c in answer.get("tool_calls") or []
    )
    prompt = Prompt(
        id="pair",
        category="tool_calling",
        prompt=pair["prompt"],
        system=pair.get("system"),
        max_tokens=256,
        tools=tuple(t["function"]["name"] for t in pair["tools"]),
        expect_tools=expected,
        expect_keywords=(),
        expect_answer=None,
        answer_regex=None,
    )
    chosen, rejected = (
        score_response(prompt, pair[key], extract_tool_calls(pair[key])).score
        for key in ("chosen", "rejected")
    )
    if chosen != 1.0 or rejected is None or rejected >= 1.0:
        raise UserError(
            f"dummy data: pair for {pair['prompt']!r} ({miss}): chosen scores {chosen},"
            f" rejected {rejected}; a near miss must score below the right answer"
        )


def _call(name: str, arguments: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}
