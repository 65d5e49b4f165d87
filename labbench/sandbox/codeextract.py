"""The model's code in its answer: fenced blocks or bare code, the block that defines the entry
point first (labbench/sandbox/execution.py runs it).
"""

import re
import textwrap

_THINK_CLOSED = re.compile(r"<think>.*?</think>", re.DOTALL)
# An opening fence: ``` or ~~~ (three or more) and an optional info string such as "python".
_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\n`]*)$")
_PYTHON_INFO = {"", "python", "py", "python3", "py3", "ipython", "pycon", "sage"}
# A line where bare code plausibly starts.
_CODE_START = re.compile(r"^(?:async\s+def|def|class|import|from\s+\S+\s+import)\b|^@\w")


def extract_code(response: str | None, entry_point: str | None = None) -> str | None:
    """The model's code: from fenced blocks (```python, ```py, ``` or ~~~), else bare code.

    Thinking (<think>...</think>, or everything before a lone </think>) is ignored. A final fence
    left open by max_tokens runs to the end of the text. Among Python blocks (python, py or no
    language), the last one that defines the entry point (def/class NAME or NAME = ...) wins, on
    its own (an import in another block is not added); without one, every Python block that
    compiles is joined in order (so a helper in one block and the function in the next both
    count, and prose or output in an unlabelled block is dropped).
    Without fences, bare code is the longest run that compiles from the first line that starts
    like code (def, class, import, from, a decorator). None when there is no code.
    """
    text = _without_thinking(response or "")
    blocks = _fenced_blocks(text)
    if blocks is None:
        return _bare_code(text)
    python = [code for info, code in blocks if info in _PYTHON_INFO and code.strip()]
    if not python:
        return None
    if entry_point:
        defining = [code for code in python if defines(code, entry_point)]
        if defining:
            return defining[-1]
    compiling = [code for code in python if _compiles(code)]
    return "\n\n".join(compiling) if compiling else python[-1]


def _without_thinking(text: str) -> str:
    text = _THINK_CLOSED.sub("", text.replace("\r\n", "\n"))
    if "</think>" in text:  # the template opened the thinking, the answer follows its close
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:  # cut off while thinking
        text = text.split("<think>", 1)[0]
    return text


def _fenced_blocks(text: str) -> list[tuple[str, str]] | None:
    """(language, dedented code) for each fenced block; None when the text has no fence."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening.group(1)
        info = opening.group(2).strip().split(" ")[0].lower()
        body, i = [], i + 1
        while i < len(lines) and not _closes(lines[i], fence):
            if lines[i].rstrip().endswith(fence):  # "    return x```": closed on the code's line
                body.append(lines[i].rstrip()[: -len(fence)])
                break
            body.append(lines[i])
            i += 1
        i += 1
        blocks.append((info, textwrap.dedent("\n".join(body)).strip("\n") + "\n"))
    return blocks or None


def _closes(line: str, fence: str) -> bool:
    mark = line.strip()
    return len(mark) >= len(fence) and mark == fence[0] * len(mark)


def defines(code: str, name: str) -> bool:
    """Whether the code defines `name` (def, class or assignment): the rule that picks the
    block holding the entry point, which codetests also uses to complete an answer."""
    escaped = re.escape(name)
    pattern = rf"^\s*(?:(?:async\s+)?def|class)\s+{escaped}\b|^\s*{escaped}\s*(?::[^=\n]*)?="
    return re.search(pattern, code, re.MULTILINE) is not None


def _compiles(code: str) -> bool:
    try:
        compile(code, "<answer>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def _bare_code(text: str) -> str | None:
    lines = text.strip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    for end in range(len(lines), start, -1):
        if end < len(lines) and lines[end][:1] in (" ", "\t"):
            continue  # cutting inside an indented block never helps
        candidate = "\n".join(lines[start:end]).strip("\n") + "\n"
        if _compiles(candidate):
            return candidate
    return None
