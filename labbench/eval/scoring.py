"""Scoring a response against a prompt's expectations, and summarising a run.

Rules:
- A prompt's score is the mean of its parts: "tools" (when expect_tools is given), "keywords"
  (when expect_keywords is not empty), "answer" (expect_answer or answer_regex) and "tests"
  (expect_tests). A prompt with no parts scores 0, never 1.
- tests: 1 when the answer's code passed them, else 0; the line gives the verdict (passed,
  failed, error, timed out, no code found) and its detail. Tests not run (exec=false) are no
  part at all: the prompt is scored on its other parts, or is unscored (None), never passed.
- tools, expect_tools = []: 1 if no tool was called, else 0.
- tools, expected calls: each expected call takes a distinct made call of the same name. It earns
  1 when every argument the suite lists has an acceptable value, 0.5 otherwise (wrong or missing
  argument). Strings are compared after trimming, numbers numerically ("4" == 4), a list in the
  suite means "any of these", arguments the suite does not list are ignored. The assignment
  maximises the total credit. Score = total credit / expected calls * min(1, expected / made),
  so making extra calls does not pay.
- keywords: the share found, case-insensitively, in the visible text and the calls' argument
  values. A keyword matches as a whole: where it starts or ends with a word character it must not
  continue a word ("ls" does not match in "tools"); other characters match literally ("O(log n)")
  and a run of spaces matches any run of whitespace.
- expect_answer: 1 if the answer is a whole token of the visible text, else 0. A numeric answer
  matches any number in the text of equal value ("100.0" and "= 100." match "100"; "1000" does
  not). answer_regex: 1 if re.search finds it in the visible text, else 0.
- finish_reason "length" is noted; when it may have dropped a tool call (unclosed tool-call
  markup, or calls expected and none made) the note says so.
A run's category and overall scores are not computed here: the ledger's views derive them from
the stored prompt scores (labbench/record/schema.py, m002), so they are defined once.
"""

import json
import re
from dataclasses import dataclass

from labbench.eval.suitetypes import ExpectedCall, Prompt
from labbench.eval.toolcalls import ToolCall, has_unclosed_tool_call, visible_text
from labbench.sandbox.execution import ExecutionResult

TRUNCATED_CALL_NOTE = "cut off by max_tokens: a tool call may have been dropped"
TRUNCATED_NOTE = "cut off by max_tokens"
TESTS_NOT_RUN = "tests not run (exec=false)"

_NUMERIC = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# A number in running text: not inside a word or a longer number; "1,000" is one number.
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\w)")
_SHORT = 40  # longest model-made value shown in an explanation


@dataclass(frozen=True)
class PromptScore:
    score: float | None  # 0..1; None: nothing was scored (tests not run and no other part)
    parts: dict[str, float]  # keys among "tools", "keywords", "answer", "tests"
    explanation: str  # one line per part, then notes


def score_response(
    prompt: Prompt,
    content: str | None,
    tool_calls: list[ToolCall],
    finish_reason: str | None = None,
    tests: ExecutionResult | None = None,
) -> PromptScore:
    """`tests` is the verdict of the prompt's expect_tests; None when they were not run."""
    text = visible_text(content)
    parts: dict[str, float] = {}
    lines: list[str] = []

    def add(part: str, score: float, why: str) -> None:
        parts[part] = score
        lines.append(f"{part} {score:.2f}: {why}")

    if prompt.expect_tools is not None:
        add("tools", *_score_tools(prompt.expect_tools, tool_calls))
    if prompt.expect_keywords:
        add("keywords", *_score_keywords(prompt.expect_keywords, text, tool_calls))
    if prompt.expect_answer is not None:
        add("answer", *_score_answer(prompt.expect_answer, text))
    elif prompt.answer_regex is not None:
        found = re.search(prompt.answer_regex, text) is not None
        add("answer", float(found), f"/{prompt.answer_regex}/ {'matched' if found else 'no match'}")
    if prompt.expect_tests is not None:
        if tests is None:
            lines.append(TESTS_NOT_RUN)
        else:
            add("tests", float(tests.passed), _tests_text(tests))
    unscored = not parts and prompt.expect_tests is not None and tests is None
    if not parts and not unscored:
        lines.append("nothing expected: scored 0")

    if finish_reason == "length":
        call_expected_but_none = bool(prompt.expect_tools) and not tool_calls
        if has_unclosed_tool_call(content) or call_expected_but_none:
            lines.append(TRUNCATED_CALL_NOTE)
        else:
            lines.append(TRUNCATED_NOTE)

    score = sum(parts.values()) / len(parts) if parts else None if unscored else 0.0
    return PromptScore(score, parts, "\n".join(lines))


def _tests_text(result: ExecutionResult) -> str:
    detail = " ".join(result.detail.split())
    return f"{result.verdict}: {_shorten(detail, 200)}" if detail else result.verdict


def failed_score(error: str) -> PromptScore:
    return PromptScore(0.0, {}, f"request failed: {error}")


def _score_tools(expected: tuple[ExpectedCall, ...], made: list[ToolCall]) -> tuple[float, str]:
    if not expected:
        if not made:
            return 1.0, "no tool called, as expected"
        return 0.0, f"expected no tool call, got {', '.join(map(_call_text, made))}"
    if not made:
        return 0.0, f"no tool called; expected {', '.join(map(_expected_text, expected))}"

    notes = []
    total = 0.0
    for want, index in zip(expected, _match_calls(expected, made), strict=True):
        if index is None:
            notes.append(f"{_expected_text(want)} not called")
            continue
        problems = _argument_problems(want, made[index])
        total += 0.5 if problems else 1.0
        if problems:
            notes.append(f"{want.name} called but {', '.join(problems)}")
        else:
            notes.append(f"{_call_text(made[index])} matched")
    score = total / len(expected)
    if len(made) > len(expected):
        factor = len(expected) / len(made)
        score *= factor
        notes.append(f"{len(made)} calls made for {len(expected)} expected (x{factor:.2f})")
    return score, "; ".join(notes)


def _match_calls(expected: tuple[ExpectedCall, ...], made: list[ToolCall]) -> list[int | None]:
    """For each expected call, the index of the distinct made call it takes (None: no match).

    Maximises the total credit: a maximum matching over full matches (augmenting paths), then
    the remaining expected calls take any free made call of the same name for half credit. All
    same-name pairs are worth at least 0.5, so no assignment with fewer full matches does better.
    """
    full = [
        [
            j
            for j, call in enumerate(made)
            if call.name == want.name and not _argument_problems(want, call)
        ]
        for want in expected
    ]
    expected_of_made: dict[int, int] = {}

    def assign(i: int, visited: set[int]) -> bool:
        for j in full[i]:
            if j not in visited:
                visited.add(j)
                if j not in expected_of_made or assign(expected_of_made[j], visited):
                    expected_of_made[j] = i
                    return True
        return False

    for i in range(len(expected)):
        assign(i, set())
    assignment: list[int | None] = [None] * len(expected)
    for j, i in expected_of_made.items():
        assignment[i] = j
    for i, want in enumerate(expected):
        if assignment[i] is None:
            free = (j for j, call in enumerate(made) if call.name == want.name)
            assignment[i] = next((j for j in free if j not in assignment), None)
    return assignment


def _argument_problems(want: ExpectedCall, call: ToolCall) -> list[str]:
    problems = []
    for key, accepted in want.arguments.items():
        if key not in call.arguments:
            problems.append(f"{key} missing")
        elif not _value_matches(accepted, call.arguments[key]):
            relation = "not in" if isinstance(accepted, list) else "!="
            problems.append(f"{key}={_short(call.arguments[key])} {relation} {accepted!r}")
    return problems


def _value_matches(accepted: object, value: object) -> bool:
    if isinstance(accepted, list):
        return any(_value_matches(choice, value) for choice in accepted)
    accepted_number, number = _as_number(accepted), _as_number(value)
    if accepted_number is not None and number is not None:
        return accepted_number == number
    if isinstance(accepted, str) and isinstance(value, str):
        return accepted.strip() == value.strip()
    return accepted == value and isinstance(accepted, bool) == isinstance(value, bool)


def _as_number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        return float(value)
    return None


def _score_keywords(
    keywords: tuple[str, ...], text: str, calls: list[ToolCall]
) -> tuple[float, str]:
    argument_text = "\n".join(_value_text(v) for call in calls for v in call.arguments.values())
    searched = f"{text}\n{argument_text}"
    found = [keyword for keyword in keywords if _contains_phrase(searched, keyword)]
    missing = [keyword for keyword in keywords if keyword not in found]
    why = []
    if found:
        why.append("found " + ", ".join(map(repr, found)))
    if missing:
        why.append("missing " + ", ".join(map(repr, missing)))
    return len(found) / len(keywords), "; ".join(why)


def _score_answer(answer: str, text: str) -> tuple[float, str]:
    number = _as_number(answer)
    if number is not None:
        numbers = (float(token.replace(",", "")) for token in _NUMBER_IN_TEXT.findall(text))
        found = any(value == number for value in numbers)
    else:
        found = _contains_phrase(text, answer)
    return float(found), f"{answer!r} {'found' if found else 'not found'} in the answer"


def _contains_phrase(text: str, phrase: str) -> bool:
    """Case-insensitive; word-character ends must not continue a word."""
    words = phrase.split()
    if not words:
        return False
    pattern = r"\s+".join(map(re.escape, words))
    if re.match(r"\w", words[0]):
        pattern = r"(?<!\w)" + pattern
    if re.search(r"\w$", words[-1]):
        pattern += r"(?!\w)"
    return re.search(pattern, text, re.IGNORECASE) is not None


def _value_text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _short(value: object) -> str:
    return _shorten(repr(value), _SHORT)


def _shorten(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 3] + "..."


def _call_text(call: ToolCall) -> str:
    arguments = ", ".join(f"{key}={_short(value)}" for key, value in call.arguments.items())
    return f"{call.name}({arguments})"


def _expected_text(call: ExpectedCall) -> str:
    return _call_text(ToolCall(call.name, call.arguments))
