"""What a suite is once loaded: its prompts, their expectations and the tools they offer. The
TOML loader (`suite`) and the built-in suites (`humaneval`) both build these."""

import copy
from dataclasses import dataclass
from pathlib import Path

from labbench.core.errors import UserError


@dataclass(frozen=True)
class ExpectedCall:
    name: str
    arguments: dict[str, object]  # a list value means "any of these values"


@dataclass(frozen=True)
class BfclEntry:
    """A BFCL question as BFCL's runner asks and checks it (labbench/eval/bfcl/suite.py)."""

    category: str  # BFCL's category, e.g. simple_python, live_irrelevance
    messages: list[dict]  # the question's first turn, sent as it is
    functions: list[dict]  # the Gorilla function docs, as the checker reads them
    tools: list[dict]  # the same with BFCL's language hints, converted by BFCL's converter
    ground_truth: list[dict]  # [{name: {param: [acceptable values]}}]; [] for (ir)relevance


@dataclass(frozen=True)
class Prompt:
    id: str
    category: str
    prompt: str
    system: str | None
    max_tokens: int
    tools: tuple[str, ...]  # names of the tools offered with this prompt
    expect_tools: tuple[ExpectedCall, ...] | None  # None: calls not scored; (): no call expected
    expect_keywords: tuple[str, ...]  # () when not given
    expect_answer: str | None
    answer_regex: str | None
    expect_tests: str | None = None  # Python test code run with the answer's code
    entry_point: str | None = None  # the function the tests call: its block wins extraction
    # The code the answer completes (HumanEval's signature and docstring): an answer without
    # the entry point is a body appended to it; one with it runs after it (its imports, helpers).
    code_prompt: str | None = None
    bfcl: BfclEntry | None = None  # a BFCL question: asked and checked BFCL's way

    @classmethod
    def built_in(cls, id: str, category: str, prompt: str, max_tokens: int, **checks) -> "Prompt":
        """A built-in suite's prompt: no system prompt, no suite tools, no TOML expectations;
        `checks` says how it is scored (expect_tests, bfcl, ...)."""
        return cls(
            id=id,
            category=category,
            prompt=prompt,
            system=None,
            max_tokens=max_tokens,
            tools=(),
            expect_tools=None,
            expect_keywords=(),
            expect_answer=None,
            answer_regex=None,
            **checks,
        )


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: Path
    prompts: tuple[Prompt, ...]
    tool_schemas: dict[str, dict]  # tool name -> {"description": ..., "parameters": {...}}
    exec_tests: bool = True  # False: expect_tests are not run and leave their prompts unscored
    # What else decides the prompts, fingerprinted with the suite file (BFCL's categories).
    selection: tuple[str, ...] | None = None

    @property
    def categories(self) -> list[str]:
        """Categories in order of first appearance."""
        return list(dict.fromkeys(prompt.category for prompt in self.prompts))

    def request_messages(self, prompt: Prompt) -> list[dict]:
        if prompt.bfcl is not None:
            return copy.deepcopy(prompt.bfcl.messages)
        system = [{"role": "system", "content": prompt.system}] if prompt.system else []
        return [*system, {"role": "user", "content": prompt.prompt}]

    def request_tools(self, prompt: Prompt) -> list[dict]:
        """The request's `tools` for this prompt, in OpenAI format and in prompt.tools order."""
        if prompt.bfcl is not None:
            return copy.deepcopy(prompt.bfcl.tools)
        return [
            {
                "type": "function",
                "function": {"name": name, **copy.deepcopy(self.tool_schemas[name])},
            }
            for name in prompt.tools
        ]


class SuiteError(UserError):
    """A suite file that cannot be used; the message names file, prompt and field."""
