"""Dummy chat data for LoRA: deterministic, self-checked and leakage-checked.

write_dummy_data() makes deterministic chat-format JSONL in train/valid/test that mlx-lm reads:
one {"messages": [...], "tools": [...]} per line, made from labbench.tiny.corpus. The tools are the
suites' own schemas; an assistant tool call is in OpenAI form ({"role": "assistant", "content":
"", "tool_calls": [{"type": "function", "function": {"name": ..., "arguments": {...}}}]}), which
the chat template renders as <tool_call>{json}</tool_call>. About 30 % of the examples answer
directly with the same tools offered: data that is all tool calls teaches a model to call tools
for everything. Nothing is written when a tool call does not survive the chat template or an
example nearly equals a suite prompt (labbench.data.leakage). Pure Python: no mlx here.
"""

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labbench.core.atomicfile import write_text_atomically
from labbench.core.errors import UserError
from labbench.data.datacheck import SPLITS
from labbench.data.dummyprefs import as_kind
from labbench.data.leakage import Leak, find_leaks
from labbench.eval.suite import load_suite
from labbench.eval.suitetypes import Suite
from labbench.record.fingerprint import dataset_fingerprint
from labbench.tiny.corpus import (
    DUMMY_WORDS,
    action_clause,
    direct_question,
    purpose_slots,
    random_command,
    random_path,
    request_slots,
)

SPLIT_SHARES = (0.8, 0.1, 0.1)  # shares of the examples in train, valid, test
DIRECT_SHARE = 0.3  # examples answered without a tool call
DEFAULT_SUITES = ("baseline",)


class DataError(UserError):
    """Data that must not be used: a leak, or tool calls that do not survive the template."""


@dataclass
class DummyDataReport:
    out_dir: Path
    counts: dict[str, int]  # examples per split
    direct_share: float  # share of examples answered without a tool call
    tool_share: dict[str, float]  # tool name -> share of the calls
    checked: int  # user messages compared with the suites' prompts
    suite_prompts: int
    leaks: list[Leak] = field(default_factory=list)  # always empty: leaks raise DataError
    files: list[Path] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def dummy_examples(n: int, seed: int, suites: Sequence[Suite]) -> list[dict]:
    """n distinct examples (by user message), about DIRECT_SHARE of them direct answers."""
    if n < 1:
        raise UserError(f"n must be at least 1, got {n}")
    tools = _offered_tools(suites)
    kinds = _tool_kinds(tools)
    if not kinds:
        known = ", ".join(f"{name}({', '.join(args)})" for name, args in _KNOWN_TOOLS.items())
        raise UserError(f"the suites offer none of the tools dummy data can call: {known}")
    systems = _systems(suites)
    rng = random.Random(seed)
    examples: list[dict] = []
    seen: set[str] = set()
    n_direct = round(n * DIRECT_SHARE)
    plan = ["direct"] * n_direct + ["tool"] * (n - n_direct)
    rng.shuffle(plan)
    for kind in plan:
        for _ in range(1000):
            if kind == "direct":
                user, answer = direct_question(rng)
                assistant = {"role": "assistant", "content": answer}
            else:
                user, assistant = _tool_request(rng, kinds)
            user = _framed(rng, user)
            if user not in seen:
                break
        else:
            raise UserError(f"cannot make {n} distinct examples: try a smaller n")
        seen.add(user)
        messages = []
        if systems:
            messages.append({"role": "system", "content": rng.choice(systems)})
        messages += [{"role": "user", "content": user}, assistant]
        examples.append({"messages": messages, "tools": tools})
    return examples


# name -> the arguments dummy data fills in; a suite tool is used only if it has all of them.
_KNOWN_TOOLS = {
    "read_file": ("path",),
    "write_file": ("path", "content"),
    "run_command": ("command",),
}
_KIND_OF_TOOL = {"read_file": "read", "write_file": "write", "run_command": "run"}


def _offered_tools(suites: Sequence[Suite]) -> list[dict]:
    """The tools the suites offer, in OpenAI format, in order of first appearance."""
    tools: dict[str, dict] = {}
    for suite in suites:
        for prompt in suite.prompts:
            for tool in suite.request_tools(prompt):
                tools.setdefault(tool["function"]["name"], tool)
    return list(tools.values())


def _tool_kinds(tools: list[dict]) -> dict[str, str]:
    """kind ("read", "write", "run") -> tool name, for the offered tools dummy data can call."""
    kinds = {}
    for tool in tools:
        name = tool["function"]["name"]
        properties = tool["function"].get("parameters", {}).get("properties", {})
        if name in _KNOWN_TOOLS and all(arg in properties for arg in _KNOWN_TOOLS[name]):
            kinds[_KIND_OF_TOOL[name]] = name
    return kinds


def _systems(suites: Sequence[Suite]) -> list[str]:
    """The system messages the suites send with tools (the deployment format), deduplicated."""
    found = [p.system for s in suites for p in s.prompts if p.tools and p.system]
    return list(dict.fromkeys(found))


def _call(name: str, arguments: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_request(rng: random.Random, kinds: dict[str, str]) -> tuple[str, dict]:
    """A user message asking for one or two tool calls, and the assistant message making them."""
    slots = request_slots(rng)
    while slots["path2"] == slots["path"]:  # two equal calls would be one (toolcalls dedupes)
        slots["path2"] = random_path(rng)
    while slots["command2"] == slots["command"]:
        slots["command2"] = random_command(rng)
    multi = [(t, k) for t, k in DUMMY_WORDS.multi if all(kind in kinds for kind in k)]
    if multi and rng.random() < 0.25:
        template, call_kinds = rng.choice(multi)
    else:
        call_kinds = (rng.choice(sorted(kinds)),)
        template = rng.choice(
            {"read": DUMMY_WORDS.read, "run": DUMMY_WORDS.run, "write": DUMMY_WORDS.write}[
                call_kinds[0]
            ]
        )
    slots |= purpose_slots(rng, slots["command"])
    user = template.format(**slots)
    calls, paths, commands = (
        [],
        [slots["path"], slots["path2"]],
        [slots["command"], slots["command2"]],
    )
    clauses = []
    for kind in call_kinds:
        if kind == "read":
            calls.append(_call(kinds[kind], {"path": paths.pop(0)}))
        elif kind == "run":
            calls.append(_call(kinds[kind], {"command": commands.pop(0)}))
        else:
            calls.append(_call(kinds[kind], {"path": paths.pop(0), "content": slots["content"]}))
        argument = calls[-1]["function"]["arguments"]
        clauses.append(action_clause(kind, argument.get("command") or argument["path"]))
    content = ", then ".join(clauses) + "."
    content = content[0].upper() + content[1:]
    return user, {"role": "assistant", "content": content, "tool_calls": calls}


def _framed(rng: random.Random, user: str) -> str:
    """The message, sometimes with some context before it or a word after it."""
    if rng.random() < 0.35:
        user = f"{rng.choice(DUMMY_WORDS.prefixes)} {user}"
    if rng.random() < 0.25:
        user = f"{user.rstrip()} {rng.choice(DUMMY_WORDS.suffixes)}"
    return user


def split_examples(examples: list[dict], seed: int) -> dict[str, list[dict]]:
    """Shuffle, then cut into SPLITS by SPLIT_SHARES; train gets the rounding remainder."""
    shuffled = list(examples)
    random.Random(f"split-{seed}").shuffle(shuffled)
    n_valid = round(len(shuffled) * SPLIT_SHARES[1])
    n_test = round(len(shuffled) * SPLIT_SHARES[2])
    n_train = len(shuffled) - n_valid - n_test
    return {
        "train": shuffled[:n_train],
        "valid": shuffled[n_train : n_train + n_valid],
        "test": shuffled[n_train + n_valid :],
    }


def write_dummy_data(
    out_dir: Path, n: int, seed: int, suite_paths: list[Path] | None = None, kind: str = "chat"
) -> DummyDataReport:
    """Generate, self-check, leak-check, then write train/valid/test.jsonl into out_dir: chat
    examples, or (kind=dpo, grpo) the same examples as preference pairs or GRPO prompts
    (labbench/data/dummyprefs.py).

    Raises DataError (nothing written) when a tool call does not survive the chat template or
    when an example is nearly equal to a suite prompt; UserError for a bad suite or n.
    """
    out_dir = Path(out_dir)
    suites = [load_suite(str(p)) for p in suite_paths] if suite_paths else _default_suites()
    examples = dummy_examples(n, seed, suites)
    check_tool_calls_render(examples)
    splits = split_examples(examples, seed)
    located = [
        (f"{name}.jsonl:{line}", _user_text(example))
        for name in SPLITS
        for line, example in enumerate(splits[name], start=1)
    ]
    leaks = find_leaks([text for _, text in located], suites)
    if leaks:
        first = leaks[0]
        raise DataError(
            f"leakage check failed: {len(leaks)} of {len(located)} examples near a suite prompt;"
            f" first: {located[first.index][0]} {first.text!r} ~ {first.suite}/{first.prompt_id}"
            f" {first.prompt!r} ({first.reason})"
        )
    lines_of = {
        name: [json.dumps(as_kind(e, kind, seed), ensure_ascii=False) + "\n" for e in splits[name]]
        for name in SPLITS
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name in SPLITS:
        path = out_dir / f"{name}.jsonl"
        lines = lines_of[name]
        write_text_atomically(path, "".join(lines))
        files.append(path)
    calls = [
        c["function"]["name"] for e in examples for c in e["messages"][-1].get("tool_calls", [])
    ]
    direct = sum(not e["messages"][-1].get("tool_calls") for e in examples)
    return DummyDataReport(
        out_dir=out_dir,
        counts={name: len(splits[name]) for name in SPLITS},
        direct_share=direct / len(examples),
        tool_share={name: calls.count(name) / len(calls) for name in dict.fromkeys(calls)},
        checked=len(located),
        suite_prompts=sum(len(s.prompts) for s in suites),
        files=files,
        fingerprint=dataset_fingerprint(out_dir),
    )


def _default_suites() -> list[Suite]:
    return [load_suite(name) for name in DEFAULT_SUITES]


def _user_text(example: dict) -> str:
    """The user messages of a chat example (what a suite prompt could leak into), joined."""
    messages = example.get("messages", [])
    return "\n".join(m.get("content") or "" for m in messages if m.get("role") == "user")


def check_tool_calls_render(examples: Iterable[dict]) -> None:
    """Each assistant turn's tool calls, rendered by the chat template and parsed back by
    labbench.eval.toolcalls, must equal the intended calls (a broken parser or template would
    otherwise make every tool score 0 unnoticed). Raises DataError on the first mismatch."""
    from labbench.eval.toolcalls import ToolCall, extract_tool_calls
    from labbench.tiny.chattemplate import render_chat

    for number, example in enumerate(examples, start=1):
        messages, tools = example["messages"], example.get("tools")
        last = messages[-1]
        intended = [
            ToolCall(c["function"]["name"], _as_arguments(c["function"]["arguments"]))
            for c in last.get("tool_calls") or []
        ]
        prompt = render_chat(messages[:-1], tools=tools, add_generation_prompt=True)
        full = render_chat(messages, tools=tools)
        if not full.startswith(prompt):
            raise DataError(f"self-check failed: example {number}: prompt is not a prefix")
        parsed = extract_tool_calls(full[len(prompt) :])
        if parsed != intended:
            raise DataError(
                f"self-check failed: example {number}: the rendered tool calls parse back as"
                f" {parsed}, expected {intended}"
            )


def _as_arguments(arguments: object) -> dict:
    if isinstance(arguments, str):
        return json.loads(arguments)
    return dict(arguments) if isinstance(arguments, dict) else {}


def write_sized_chats(out_dir: Path, words: Sequence[int], seed: int = 0) -> Path:
    """A chat dataset whose answers have the given numbers of random words, one example each
    in train.jsonl (valid.jsonl: the first two): data of known lengths, for measuring memory."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, lengths in (("train", words), ("valid", words[:2])):
        lines = []
        for count in lengths:
            answer = " ".join(rng.choice(DUMMY_WORDS.stems) for _ in range(count))
            messages = [
                {"role": "user", "content": "Write some code."},
                {"role": "assistant", "content": answer},
            ]
            lines.append(json.dumps({"messages": messages}) + "\n")
        write_text_atomically(out_dir / f"{split}.jsonl", "".join(lines))
    return out_dir
