"""Dummy chat data for LoRA, dataset validation, and the leakage check against eval suites.

write_dummy_data() makes deterministic chat-format JSONL in train/valid/test that mlx-lm reads:
one {"messages": [...], "tools": [...]} per line. The tools are the suites' own schemas; an
assistant tool call is in OpenAI form ({"role": "assistant", "content": "", "tool_calls": [{"type":
"function", "function": {"name": ..., "arguments": {...}}}]}), which the chat template renders as
<tool_call>{json}</tool_call>. About 30 % of the examples answer directly with the same tools
offered: data that is all tool calls teaches a model to call tools for everything.

Leakage: a user message is "nearly equal" to a suite prompt when, both normalised (NFKC, case
folded, whitespace collapsed), they are equal, or difflib's ratio is >= 0.9 (a copy with a path
or a number swapped), or at least half of the prompt's word 5-grams occur in the message (a
prompt pasted into a longer message; a prompt of fewer than five words must occur whole, in
order). Pure Python and a light import: no mlx here.
"""

import difflib
import hashlib
import json
import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labbench.errors import UserError
from labbench.suite import Suite, load_suite
from labbench.tinymodel import _NOUNS as _TINY_NOUNS
from labbench.tinymodel import _VERBS as _TINY_VERBS

SPLITS = ("train", "valid", "test")
SPLIT_SHARES = (0.8, 0.1, 0.1)  # shares of the examples in train, valid, test
DIRECT_SHARE = 0.3  # examples answered without a tool call
# A tool-call answer first says what it does ("Reading \"src/app.py\".") in these words, as
# the pre-trained tiny model answers such requests in prose (labbench.pretrain).
ACTION_WORDS = {"read": "reading", "run": "running", "write": "writing"}
DEFAULT_SUITES = ("baseline",)
ROLES = ("system", "user", "assistant", "tool")

# Leakage thresholds (module docstring).
LEAK_RATIO = 0.9
LEAK_NGRAM = 5
LEAK_NGRAM_SHARE = 0.5


class DataError(UserError):
    """Data that must not be used: a leak, or tool calls that do not survive the template."""


@dataclass(frozen=True)
class Leak:
    index: int  # position of the text in the texts given to find_leaks
    text: str
    suite: str
    prompt_id: str
    prompt: str
    reason: str  # "equal", "ratio 0.93" or "5-gram overlap 0.60"


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


# --- dummy data -----------------------------------------------------------------------------

# Word banks. Paths reuse the tiny model's words, so its tokenizer holds most of them whole.
# Directories are one level deep and never file stems: "src/core/core/..." is the loop a tiny
# model falls into when a word can both continue a path and start a directory.
_DIRS = ["src", "lib", "app", "scripts", "docs", "tests", "bin", "web"]
_STEMS = """
api auth cache cli client config data db error event handler helper index item job loader
logger main math message model module node parser plugin queue record request response route
router schema server session settings state store task token types user utils view worker
""".split()
# The tiny tokenizer's own words (labbench.tinymodel), minus the directory names.
_MORE_STEMS = sorted(set(_TINY_NOUNS + _TINY_VERBS) - set(_DIRS))
_EXTS = [".py", ".py", ".py", ".py", ".md", ".txt", ".json", ".toml", ".js", ".yaml", ".sh"]
_ROOT_FILES = [
    "Makefile",
    "setup.py",
    "requirements.txt",
    "CHANGELOG.md",
    "Dockerfile",
    "tox.ini",
    "package.json",
    "main.py",
    "config.yaml",
    "LICENSE.txt",
]
_COMMANDS = [
    "pytest -q",
    "pytest -x",
    "pytest {tests}",
    "python -m pytest -k {stem}",
    "python {py}",
    "python3 {py}",
    "ls",
    "ls -la",
    "ls {dir}",
    "git status",
    "git diff",
    "git log --oneline -5",
    "git branch",
    "cat {path}",
    "grep -rn {word} {dir}",
    "grep -n {stem} {py}",
    "ruff check .",
    "ruff check {dir}",
    "ruff format {py}",
    "black {dir}",
    "flake8 {dir}",
    "mypy {py}",
    "make test",
    "make build",
    "npm test",
    "npm run build",
    "pip list",
    "pip install -r requirements.txt",
    "wc -l {path}",
    "head -n 20 {path}",
    "tail -n 50 {path}",
    "mkdir -p {dir}",
    "du -sh {dir}",
    "find {dir} -name '*.py'",
    "echo $PATH",
]
_GREP_WORDS = ["FIXME", "XXX", "HACK", "import", "print", "def main", "password"]
_CONTENTS = [
    "print('hi')",
    'print("done")',
    "x = 1",
    "import os",
    "DEBUG = True",
    "def main(): pass",
    "# config",
    "version = 1.0",
    "hello world",
    "TODO: write docs",
    "FIXME: slow loop",
    "name: demo",
    "port = 8080",
    "{stem} = {number}",
    "print({a} * {b})",
    "from {stem} import {stem2}",
    "return {stem}",
    "assert {stem}",
]

# User messages that ask for a tool; {path}, {command} and {content} are filled in.
_READ = [
    "Open {path}.",
    "Open {path} for me.",
    "Show me {path}.",
    "Show me the contents of {path}.",
    "Can you read {path}?",
    "Please read {path}.",
    "Read {path}.",
    "What does {path} contain?",
    "Let me see {path}.",
    "Look at {path} and explain it.",
    "Display {path}.",
    "I need to see what is inside {path}.",
    "Load {path} so we can review it.",
    "Print the contents of {path}.",
    "Something is broken in {path}; open it.",
    "The bug is probably in {path}. Please read it.",
    "Check what {path} looks like.",
    "Go through {path} and summarise it.",
    "Could you open {path} and explain the main function?",
    "What's inside {path}?",
    "Read the file {path}, please.",
    "Open the file {path} and walk me through it.",
    "Show the file {path} so I can see the code.",
    "I think {path} has an error. Show it to me.",
]
_RUN = [
    "Run {command}",
    "Run {command}.",
    "Please run `{command}`.",
    "Execute {command}",
    "Execute `{command}` and show me the output.",
    "Can you run {command} for me?",
    "Run the command {command}",
    "In the shell, run {command}",
    "Start {command} in the terminal.",
    "Try running {command}.",
    "Run the command: {command}",
    "Please run this command: {command}",
    "{purpose} by running {command}",
    "{purpose} with {command}",
    "{purpose}: run {command}",
    "Use {command} to {purpose_lower}.",
]
# Purposes fitting each command's first word, for "{purpose} by running {command}".
_PURPOSES = {
    "pytest": ["Test the code", "Check that everything passes", "Run the unit tests"],
    "python": ["Try the script", "Start the program", "Execute the script"],
    "python3": ["Try the script", "Start the program"],
    "ls": ["Show the files", "See what is in the folder"],
    "git": ["Check the repository", "Look at the history", "See what changed"],
    "cat": ["Print the file", "Dump the file"],
    "grep": ["Search the code", "Look for matches"],
    "ruff": ["Lint the code", "Check the style"],
    "black": ["Format the code"],
    "flake8": ["Lint the code"],
    "mypy": ["Check the types"],
    "make": ["Build the project", "Run the build"],
    "npm": ["Build the frontend", "Run the JavaScript tests"],
    "pip": ["Check the packages", "Install the dependencies"],
    "wc": ["Count the lines"],
    "head": ["Show the first lines"],
    "tail": ["Show the last lines"],
    "mkdir": ["Create the folder"],
    "du": ["Measure the folder size"],
    "find": ["Find the Python files"],
    "echo": ["Show the variable"],
}
_WRITE = [
    "Write {content} to {path}",
    "Write {content} into {path}.",
    "Save {content} in {path}.",
    "Save this to {path}: {content}",
    "Put the line {content} into {path}",
    "Make a new file {path} with {content}",
    "Store {content} in a file called {path}.",
    "Create {path} with the text {content}",
    "Create {path} and write {content} in it.",
    "Write a file {path} that contains {content}",
    "Please write {content} to the file {path}.",
    "Create a new file {path} containing {content}",
    "Save the line {content} to {path}",
    "Store the text {content} in {path}.",
    "Make a file called {path} that says {content}",
    "Add a file {path} with the content {content}",
    "New file {path} containing the code {content}",
]
# Two calls: (template, kinds of the two calls).
_MULTI = [
    ("Read {path} and {path2}.", ("read", "read")),
    ("Open both {path} and {path2}.", ("read", "read")),
    ("Show me {path} and also {path2}.", ("read", "read")),
    ("Look at {path} and {path2}: read them both.", ("read", "read")),
    ("Open {path}, then run {command}.", ("read", "run")),
    ("Read {path} and run {command} afterwards.", ("read", "run")),
    ("First show me {path}, then run {command}", ("read", "run")),
    ("Save {content} to {path} and run {command}.", ("write", "run")),
    ("Write {content} into {path}, then execute {command}", ("write", "run")),
    ("Run {command}, then {command2}.", ("run", "run")),
    ("Run {command} and after that {command2}", ("run", "run")),
    ("Run {command}, then open {path}.", ("run", "read")),
]

# Direct answers: (question templates, answer) per topic; {x} is the topic's subject.
_CONCEPTS = [
    ("a Python dict", "A dict maps keys to values; looking up a key is fast."),
    ("a set", "A set holds unique items in no particular order."),
    ("a generator", "A generator yields values one at a time instead of building a list."),
    ("a decorator", "A decorator wraps a function to add behaviour around it."),
    ("a lambda", "A lambda is a small anonymous function written in one expression."),
    ("a class", "A class bundles data and the methods that work on it."),
    ("a virtual environment", "A virtual environment keeps a project's packages separate."),
    ("recursion", "Recursion is a function calling itself on a smaller problem."),
    ("a unit test", "A unit test checks one small piece of code in isolation."),
    ("an API", "An API is the set of functions or endpoints a program offers to others."),
    ("JSON", "JSON is a text format for objects, lists, strings and numbers."),
    ("a pull request", "A pull request asks to merge your branch after review."),
    ("a merge conflict", "A merge conflict happens when two branches change the same lines."),
    ("HTTP status 200", "200 means OK: the request worked."),
    ("HTTP status 500", "500 means Internal Server Error: the server failed."),
    ("HTTP status 403", "403 means Forbidden: you are not allowed to access it."),
    ("HTTP status 301", "301 means Moved Permanently: the resource has a new URL."),
    ("a race condition", "A race condition is a bug that depends on the timing of threads."),
    ("a linked list", "A linked list is a chain of nodes, each pointing to the next."),
    ("a hash function", "A hash function maps data to a fixed-size number."),
    ("an environment variable", "An environment variable is a named setting a process reads."),
    ("a docstring", "A docstring is the string at the top of a function that documents it."),
    ("a context manager", "A context manager sets something up and cleans it up in a with block."),
    ("type hints", "Type hints annotate the expected types; Python does not enforce them."),
]
_CONCEPT_QUESTIONS = [
    "What is {x}?",
    "Explain {x} in one sentence.",
    "Can you explain {x}?",
    "I'm new to this: what is {x}?",
    "Quick question, what is {x}?",
    "In simple words, what is {x}?",
]
_COMMAND_ANSWERS = {
    "pytest": "It runs the test suite and reports which tests fail.",
    "python": "It runs the script with the Python interpreter.",
    "python3": "It runs the script with Python 3.",
    "ls": "It lists the files in a folder.",
    "git": "It is a git command: it shows or changes the state of the repository.",
    "cat": "It prints a file to the terminal.",
    "grep": "It searches files for lines that match a pattern.",
    "ruff": "It lints or formats Python code.",
    "black": "It formats Python code.",
    "flake8": "It checks Python code for style problems.",
    "mypy": "It checks the type hints of Python code.",
    "make": "It runs a target from the Makefile.",
    "npm": "It runs a script from package.json.",
    "pip": "It manages Python packages.",
    "wc": "It counts lines, words and bytes.",
    "head": "It prints the first lines of a file.",
    "tail": "It prints the last lines of a file.",
    "mkdir": "It creates a directory.",
    "du": "It shows how much disk space a folder uses.",
    "find": "It searches a folder tree for matching files.",
    "echo": "It prints its arguments.",
}
_COMMAND_QUESTIONS = [
    "What does `{command}` do?",
    "Explain the command {command}.",
    "Without running it, explain {command}.",
    "Don't run anything: what is `{command}` for?",
    "What is the purpose of {command}? Just explain.",
]
_HOWTO = [
    ("How do I reverse a list in Python?", "Use `items[::-1]` or `items.reverse()`."),
    ("How do I read a file in Python?", "Use `with open(path) as f: text = f.read()`."),
    ("How do I get the length of a string?", "Use `len(text)`."),
    ("How do I sort a list?", "Use `sorted(items)` or `items.sort()`."),
    ("How do I join strings with commas?", "Use `', '.join(words)`."),
    ("How do I parse JSON in Python?", "Use `json.loads(text)`."),
    ("How do I check if a key is in a dict?", "Use `key in mapping`."),
    ("How do I make a new git branch?", "Use `git switch -c NAME`."),
    ("How do I install a package with pip?", "Use `pip install NAME`."),
    ("How do I print without a newline?", "Use `print(text, end='')`."),
    ("How can I loop over a dict?", "Use `for key, value in mapping.items():`."),
    ("How do I convert a string to an int?", "Use `int(text)`."),
]
# Context around a request or a question, added to either kind alike: it varies the wording and
# the length, so that mlx-lm's length-sorted batches are not one kind each.
_PREFIXES = [
    "Quick question.",
    "Hi!",
    "I'm working on the parser.",
    "We have a failing build.",
    "I am new to this project.",
    "One more thing.",
    "Sorry to bother you again.",
    "For the release,",
    "This is for the web app.",
    "My colleague asked me this.",
    "Before lunch:",
    "Context: a small Python service with a few modules.",
]
_SUFFIXES = [
    "Thanks!",
    "Thank you.",
    "Please.",
    "It's urgent.",
    "Keep it short.",
    "I need it for a code review.",
    "Thanks in advance, this has been bugging me all day.",
]
_CHITCHAT = [
    ("Hello!", "Hello! What are we working on?"),
    ("Hi there", "Hi! How can I help with your code?"),
    ("Thanks, that helped.", "Glad it helped."),
    ("Thank you!", "You're welcome."),
    ("Who are you?", "I am a small coding assistant."),
    ("What can you do?", "I can read and write files, run commands and explain code."),
    ("Good morning", "Good morning! What do you need?"),
]


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
                user, assistant = _direct(rng)
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


def _stem(rng: random.Random) -> str:
    """A file stem: often one of many words, so a model must copy it rather than guess it."""
    return rng.choice(_STEMS) if rng.random() < 0.5 else rng.choice(_MORE_STEMS)


def _path(rng: random.Random) -> str:
    if rng.random() < 0.12:
        return rng.choice(_ROOT_FILES)
    stem = _stem(rng)
    if rng.random() < 0.3:
        stem = f"{stem}_{_stem(rng)}"
    ext = rng.choice(_EXTS)
    if ext == ".py" and rng.random() < 0.25:
        stem = "test_" + stem
    name = stem + ext
    return name if rng.random() < 0.25 else f"{rng.choice(_DIRS)}/{name}"


def _py_path(rng: random.Random) -> str:
    path = _path(rng)
    return path if path.endswith(".py") else path.rsplit(".", 1)[0].rsplit("/", 1)[-1] + ".py"


def _command(rng: random.Random) -> str:
    stem = rng.choice(_STEMS)
    return rng.choice(_COMMANDS).format(
        tests=f"tests/test_{stem}.py",
        stem=stem,
        py=_py_path(rng),
        dir=rng.choice(_DIRS),
        path=_path(rng),
        word=rng.choice(_GREP_WORDS),
    )


def _content(rng: random.Random) -> str:
    stem, stem2 = rng.sample(_STEMS, 2)
    return rng.choice(_CONTENTS).format(
        stem=stem, stem2=stem2, number=rng.randint(0, 99), a=rng.randint(1, 9), b=rng.randint(1, 9)
    )


def _call(name: str, arguments: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_request(rng: random.Random, kinds: dict[str, str]) -> tuple[str, dict]:
    """A user message asking for one or two tool calls, and the assistant message making them."""
    slots = {
        "path": _path(rng),
        "path2": _path(rng),
        "command": _command(rng),
        "command2": _command(rng),
        "content": _content(rng),
    }
    while slots["path2"] == slots["path"]:  # two equal calls would be one (toolcalls dedupes)
        slots["path2"] = _path(rng)
    while slots["command2"] == slots["command"]:
        slots["command2"] = _command(rng)
    multi = [(t, k) for t, k in _MULTI if all(kind in kinds for kind in k)]
    if multi and rng.random() < 0.25:
        template, call_kinds = rng.choice(multi)
    else:
        call_kinds = (rng.choice(sorted(kinds)),)
        template = rng.choice({"read": _READ, "run": _RUN, "write": _WRITE}[call_kinds[0]])
    first_word = slots["command"].split()[0]
    purpose = rng.choice(_PURPOSES[first_word])
    slots |= {"purpose": purpose, "purpose_lower": purpose[0].lower() + purpose[1:]}
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


def action_clause(kind: str, target: str, quotes=('"', '"'), content: str | None = None) -> str:
    """What an answer says it does: 'reading "src/app.py"', 'writing "x = 1" to "a.py"'."""
    left, right = quotes
    what = f"{left}{target}{right}"
    if content is not None:
        what = f"{left}{content}{right} to {what}"
    return f"{ACTION_WORDS[kind]} {what}"


def _framed(rng: random.Random, user: str) -> str:
    """The message, sometimes with some context before it or a word after it."""
    if rng.random() < 0.35:
        user = f"{rng.choice(_PREFIXES)} {user}"
    if rng.random() < 0.25:
        user = f"{user.rstrip()} {rng.choice(_SUFFIXES)}"
    return user


def _direct(rng: random.Random) -> tuple[str, dict]:
    """A question needing no tool, and its prose answer."""
    topic = rng.random()
    if topic < 0.35:
        subject, answer = rng.choice(_CONCEPTS)
        user = rng.choice(_CONCEPT_QUESTIONS).format(x=subject)
    elif topic < 0.6:
        command = _command(rng)
        user = rng.choice(_COMMAND_QUESTIONS).format(command=command)
        answer = f"`{command}`: {_COMMAND_ANSWERS[command.split()[0]]}"
    elif topic < 0.8:
        a, b = rng.randint(0, 999), rng.randint(0, 99)
        op, value = rng.choice([("+", a + b), ("-", a - b)])
        user = rng.choice(["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?"])
        user = user.format(a=a, op=op, b=b)
        answer = f"{a} {op} {b} = {value}"
    elif topic < 0.92:
        user, answer = rng.choice(_HOWTO)
    else:
        user, answer = rng.choice(_CHITCHAT)
    return user, {"role": "assistant", "content": answer}


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
    out_dir: Path, n: int, seed: int, suite_paths: list[Path] | None = None
) -> DummyDataReport:
    """Generate, self-check, leak-check, then write train/valid/test.jsonl into out_dir.

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
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name in SPLITS:
        path = out_dir / f"{name}.jsonl"
        tmp = path.with_name(f".{path.name}.tmp")
        lines = (json.dumps(example, ensure_ascii=False) + "\n" for example in splits[name])
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.replace(path)
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
    labbench.toolcalls, must equal the intended calls (a broken parser or template would
    otherwise make every tool score 0 unnoticed). Raises DataError on the first mismatch."""
    from labbench.tinymodel import render_chat
    from labbench.toolcalls import ToolCall, extract_tool_calls

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


# --- leakage --------------------------------------------------------------------------------


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _words(normalized: str) -> list[str]:
    return re.findall(r"\w+", normalized)


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _contains_run(words: list[str], run: tuple[str, ...]) -> bool:
    return any(tuple(words[i : i + len(run)]) == run for i in range(len(words) - len(run) + 1))


def find_leaks(texts: Sequence[str], suites: Sequence[Suite]) -> list[Leak]:
    """Texts (e.g. training user messages) nearly equal to a suite prompt (module docstring)."""
    prompts = []
    for suite in suites:
        for prompt in suite.prompts:
            norm = normalize(prompt.prompt)
            words = _words(norm)
            prompts.append((suite.name, prompt, norm, _ngrams(words, LEAK_NGRAM), len(words)))
    leaks = []
    for index, text in enumerate(texts):
        norm = normalize(text)
        words = _words(norm)
        grams = _ngrams(words, LEAK_NGRAM)
        matcher = difflib.SequenceMatcher(autojunk=False)
        matcher.set_seq2(norm)
        for suite_name, prompt, prompt_norm, prompt_grams, n_words in prompts:
            reason = None
            if norm == prompt_norm:
                reason = "equal"
            else:
                matcher.set_seq1(prompt_norm)
                if (
                    matcher.real_quick_ratio() >= LEAK_RATIO
                    and matcher.quick_ratio() >= LEAK_RATIO
                    and (ratio := matcher.ratio()) >= LEAK_RATIO
                ):
                    reason = f"ratio {ratio:.2f}"
                elif prompt_grams:
                    if n_words < LEAK_NGRAM:
                        if _contains_run(words, next(iter(prompt_grams))):
                            reason = "contains the whole prompt"
                    else:
                        share = len(prompt_grams & grams) / len(prompt_grams)
                        if share >= LEAK_NGRAM_SHARE:
                            reason = f"{LEAK_NGRAM}-gram overlap {share:.2f}"
            if reason:
                leaks.append(Leak(index, text, suite_name, prompt.id, prompt.prompt, reason))
                break
    return leaks


# --- validation -----------------------------------------------------------------------------


def check_dataset(path: Path) -> list[str]:
    """Problems as "file:line: problem". path: a directory with train/valid/test.jsonl, or one
    .jsonl file. A directory needs a non-empty train.jsonl; valid and test may be missing."""
    path = Path(path)
    if path.is_dir():
        problems = []
        train = path / "train.jsonl"
        if not train.is_file():
            problems.append(f"{train}: missing (the train split is required)")
        for name in SPLITS:
            file = path / f"{name}.jsonl"
            if file.is_file():
                found, count = _check_file(file)
                problems += found
                if name == "train" and count == 0:
                    problems.append(f"{file}:1: empty train split (no examples)")
        return problems
    if not path.is_file():
        return [f"{path}: no such file or directory"]
    found, count = _check_file(path)
    if count == 0:
        found.append(f"{path}:1: no examples")
    return found


def count_examples(path: Path) -> dict[str, int]:
    """Non-blank lines per split of a dataset directory (a single file counts as train)."""
    path = Path(path)
    files = {name: path / f"{name}.jsonl" for name in SPLITS} if path.is_dir() else {"train": path}
    return {
        name: sum(1 for line in _lines(file) if line.strip()) if file.is_file() else 0
        for name, file in files.items()
    }


def _lines(file: Path) -> list[str]:
    return file.read_text(encoding="utf-8", errors="replace").splitlines()


def _check_file(file: Path) -> tuple[list[str], int]:
    """(problems, number of examples) for one JSONL file."""
    try:
        raw = file.read_bytes()
    except OSError as error:
        return [f"{file}: cannot read: {error.strerror or error}"], 0
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        return [f"{file}:{line}: not UTF-8"], 0
    problems: list[str] = []
    count = 0
    data_format = None
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{file}:{number}"
        if not line.strip():
            problems.append(f"{where}: blank line (mlx-lm cannot read it)")
            continue
        count += 1
        try:
            example = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{where}: bad JSON: {error.msg} (column {error.colno})")
            continue
        if not isinstance(example, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        this_format = _format_of(example)
        if this_format is None:
            problems.append(
                f"{where}: no data: expected a messages list, prompt and completion, or text"
            )
            continue
        if data_format is None:
            data_format = this_format
        elif this_format != data_format:
            problems.append(
                f"{where}: {this_format} example in a {data_format} file"
                " (mlx-lm reads every line in the first line's format)"
            )
            continue
        problems += [f"{where}: {problem}" for problem in _check_example(example, this_format)]
    return problems, count


def _format_of(example: dict) -> str | None:
    if "messages" in example:
        return "chat"
    if "prompt" in example and "completion" in example:
        return "completions"
    if "text" in example:
        return "text"
    return None


def _check_example(example: dict, data_format: str) -> list[str]:
    if data_format == "text":
        return [] if _nonempty_string(example["text"]) else ["empty text"]
    if data_format == "completions":
        return [
            f"empty {key}" for key in ("prompt", "completion") if not _nonempty_string(example[key])
        ]
    problems = []
    tool_names = None
    if "tools" in example and example["tools"] is not None:
        tool_names, tool_problems = _tool_names(example["tools"])
        problems += tool_problems
    messages = example["messages"]
    if not isinstance(messages, list) or not messages:
        return problems + ["messages must be a non-empty list"]
    for number, message in enumerate(messages, start=1):
        problems += [
            f"message {number}: {p}" for p in _check_message(message, tool_names, first=number == 1)
        ]
    last = messages[-1]
    role = last.get("role") if isinstance(last, dict) else None
    if role != "assistant":
        problems.append(f"last message is {role!r}, not the assistant's (nothing to learn)")
    return problems


def _check_message(message: object, tool_names: set[str] | None, first: bool) -> list[str]:
    if not isinstance(message, dict):
        return ["not an object"]
    role = message.get("role")
    if role not in ROLES:
        return [f"role {role!r} is not one of {', '.join(ROLES)}"]
    if role == "system" and not first:
        return ["a system message must come first"]
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return ["content must be a string"]
    calls = message.get("tool_calls")
    if calls is not None and role != "assistant":
        return ["only assistant messages have tool_calls"]
    if role == "assistant" and calls:
        return _check_calls(calls, tool_names)
    if not _nonempty_string(content):
        return ["empty content"]
    return []


def _check_calls(calls: object, tool_names: set[str] | None) -> list[str]:
    if not isinstance(calls, list):
        return ["tool_calls must be a list"]
    problems = []
    for number, call in enumerate(calls, start=1):
        if not isinstance(call, dict):
            problems.append(f"tool call {number}: not an object")
            continue
        function = call.get("function", call)  # OpenAI form, or a bare {"name", "arguments"}
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not _nonempty_string(name):
            problems.append(f"tool call {number}: no function name")
            continue
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                problems.append(f"tool call {number}: arguments are not JSON")
                continue
        if not isinstance(arguments, dict):
            problems.append(f"tool call {number}: arguments must be an object")
        if tool_names is not None and name not in tool_names:
            problems.append(f"tool call {number}: {name!r} is not among the example's tools")
    return problems


def _tool_names(tools: object) -> tuple[set[str] | None, list[str]]:
    if not isinstance(tools, list):
        return None, ["tools must be a list"]
    names: set[str] = set()
    for number, tool in enumerate(tools, start=1):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not _nonempty_string(name):
            return None, [f"tool {number}: no function name"]
        names.add(name)
    return names, []


def _nonempty_string(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


# --- fingerprint ----------------------------------------------------------------------------


def dataset_fingerprint(path: Path) -> str:
    """sha256 over the names and contents of a dataset's .jsonl files (or of one file)."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        data = file.read_bytes()
        digest.update(f"{file.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
