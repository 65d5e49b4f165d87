"""Dataset validation: whether `just train` can use a dataset, every problem as file:line.

The rule `just check-data`, `just train` and `just bench` share (check_dataset): a dataset is a
directory with train.jsonl, and valid.jsonl when training validates (`just train` always
does, except GRPO, which is judged by its rewards and checkpoint evals); test.jsonl may be
missing. A file's format is its first line's: chat (messages), completions, text, preference
pairs (prompt, chosen, rejected: DPO and ORPO) or GRPO prompts (prompt and expect_ keys:
labbench/data/grpodata.py), and `require_trainable` refuses a format the method cannot train
on. mlx-lm reads every split file that is present, and fails on an empty one, on a blank line
and on a line that is not JSON, so each present file needs at least one example and every line
must be one it can read. Pure Python: no mlx here.
"""

import json
from pathlib import Path

from labbench.core.errors import UserError
from labbench.data.grpodata import grpo_prompt, is_grpo_example

SPLITS = ("train", "valid", "test")
# The data formats each training method reads (--method).
METHOD_FORMATS = {
    "sft": ("chat", "completions", "text"),
    "dpo": ("preference",),
    "orpo": ("preference",),
    "grpo": ("grpo",),
}
FORMAT_HINTS = {
    "preference": "prompt/chosen/rejected pairs (`just dummy-data kind=dpo`)",
    "grpo": "prompts with expectations (`just dummy-data kind=grpo`, or data=suite:NAME)",
    "chat": "chat examples (`just dummy-data`)",
}
ROLES = ("system", "user", "assistant", "tool")


def check_dataset(path: Path, need_valid: bool = True) -> list[str]:
    """Problems as "file:line: problem"; none when training can use the dataset.

    path: a dataset directory, or one .jsonl file (checked as one split). need_valid=False
    for training without validation (`just bench`): valid.jsonl may then be missing.
    """
    path = Path(path)
    if path.is_dir():
        return _check_directory(path, need_valid)
    if not path.is_file():
        return [f"{path}: no such file or directory"]
    found, count = _check_file(path)
    if count == 0:
        found.append(f"{path}:1: no examples")
    return found


def require_trainable(path: Path, need_valid: bool = True, method: str = "sft") -> None:
    """Raise UserError with the first of check_dataset's problems, unless `method` can train
    on the directory at path; a file is not a dataset to train on."""
    path = Path(path)
    if path.is_file():
        problems = [f"{path}: a file; training takes a directory with train.jsonl in it"]
    else:
        problems = _wrong_format(path / "train.jsonl", method) or check_dataset(
            path, need_valid and method != "grpo"
        )
    if problems:
        more = f" (and {len(problems) - 1} more; see `just check-data {path}`)"
        raise UserError(problems[0] + (more if len(problems) > 1 else ""))


def _check_directory(path: Path, need_valid: bool) -> list[str]:
    problems = []
    for name in SPLITS:
        file = path / f"{name}.jsonl"
        if not file.is_file():
            if name == "train":
                problems.append(f"{file}: missing (the train split is required)")
            elif name == "valid" and need_valid:
                problems.append(f"{file}: missing (training validates on the valid split)")
            continue
        found, count = _check_file(file)
        problems += found
        if count == 0:
            problems.append(f"{file}:1: empty {name} split (no examples)")
    return problems


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
                f"{where}: no data: expected a messages list, prompt and completion, text,"
                " prompt/chosen/rejected, or prompt with expect_ keys"
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
        if this_format == "grpo":
            problems += _check_grpo(example, where, number)
            continue
        problems += [f"{where}: {problem}" for problem in _check_example(example, this_format)]
    return problems, count


def _wrong_format(train: Path, method: str) -> list[str]:
    """The problem when train.jsonl's format is one `method` cannot train on."""
    found = data_format(train) if train.is_file() else None
    if found is None or found in METHOD_FORMATS[method]:
        return []
    wanted = METHOD_FORMATS[method][0]
    hint = FORMAT_HINTS.get(wanted, wanted)
    return [f"{train}:1: {found} examples; --method {method} trains on {hint}"]


def data_format(file: Path) -> str | None:
    """The format of a JSONL file's first line (None: not a known format)."""
    first = next((line for line in _lines(file) if line.strip()), "")
    try:
        example = json.loads(first)
    except json.JSONDecodeError:
        return None
    return _format_of(example) if isinstance(example, dict) else None


def _format_of(example: dict) -> str | None:
    if "messages" in example:
        return "chat"
    if "prompt" in example and ("chosen" in example or "rejected" in example):
        return "preference"
    if is_grpo_example(example):
        return "grpo"
    if "prompt" in example and "completion" in example:
        return "completions"
    if "text" in example:
        return "text"
    return None


def _check_grpo(example: dict, where: str, line: int) -> list[str]:
    try:
        grpo_prompt(example, where, line)
    except UserError as error:
        return [str(error)]
    return []


def _check_example(example: dict, data_format: str) -> list[str]:
    if data_format == "preference":
        return _check_pair(example)
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


def _check_pair(example: dict) -> list[str]:
    """A DPO/ORPO pair: prompt, chosen and rejected are text (the answers as the assistant
    would write them); system and tools are optional; ORPO's preference_score is a number."""
    problems = [
        f"{key}: missing" if key not in example else f"{key}: must be non-empty text"
        for key in ("prompt", "chosen", "rejected")
        if not _nonempty_string(example.get(key))
    ]
    if "system" in example and not _nonempty_string(example["system"]):
        problems.append("system: must be non-empty text")
    if example.get("tools") is not None:
        problems += [f"tools: {p}" for p in _tool_names(example["tools"])[1]]
    score = example.get("preference_score", 1.0)
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        problems.append("preference_score: must be a number")
    if not problems and example["chosen"] == example["rejected"]:
        problems.append("chosen: the same as rejected (nothing to prefer)")
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


def training_prompts(path: Path) -> list[str]:
    """What a model is asked in a checked dataset (or suite file): the user messages of chat
    examples, the prompt of pairs and GRPO examples, a completion's prompt; for the leakage
    check against the suite that will judge the training."""
    path = Path(path)
    if path.suffix == ".toml":
        from labbench.eval.suite import load_suite

        return [prompt.prompt for prompt in load_suite(str(path)).prompts]
    texts = []
    for name in SPLITS:
        file = path / f"{name}.jsonl"
        for line in _lines(file) if file.is_file() else []:
            example = json.loads(line)
            if "messages" in example:
                users = [
                    m.get("content") or "" for m in example["messages"] if m.get("role") == "user"
                ]
                texts.append("\n".join(users))
            elif "prompt" in example:
                texts.append(str(example["prompt"]))
    return texts
