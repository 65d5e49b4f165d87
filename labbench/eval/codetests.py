"""Running a prompt's expect_tests on the code in an answer, in labbench/sandbox/execution.py's
contained executor.

With a code_prompt (HumanEval's signature and docstring) the program follows the HumanEval
harness, which runs prompt + completion + tests: an answer that does not define the entry point
is a body appended to the prompt; one that defines it runs after the prompt, so the prompt's
imports and helper functions (HumanEval/32's `poly`, /38's `encode_cyclic`) are there and the
answer's definition replaces the stub.
"""

import textwrap

from labbench.eval.suitetypes import Prompt
from labbench.sandbox.codeextract import defines, extract_code
from labbench.sandbox.execution import ExecutionResult, run_tests


def run_answer_tests(prompt: Prompt, response: str | None, timeout_s: float) -> ExecutionResult:
    """Run the prompt's tests on the answer's code ("no code found" when it has none)."""
    if prompt.expect_tests is None:
        raise ValueError(f"prompt {prompt.id} has no expect_tests")
    return run_tests(program_for(prompt, response), prompt.expect_tests, timeout_s=timeout_s)


def program_for(prompt: Prompt, response: str | None) -> str | None:
    """The code to run with the prompt's tests, or None when the answer holds no code."""
    code = extract_code(response, prompt.entry_point)
    if prompt.code_prompt is None:
        return code
    defined = code is not None and prompt.entry_point and defines(code, prompt.entry_point)
    if defined:
        return f"{prompt.code_prompt}\n{code}"
    if code is not None:
        return prompt.code_prompt + _as_body(code)
    # The answer as a raw completion, the harness's own format: an indented body alone is not
    # code that extraction can recognise, but it compiles after the prompt. Prose at column 0
    # ("Sorry") could compile too: a body must be indented.
    body = (response or "").lstrip("\n")
    if not body[:1].isspace() or not body.strip():
        return None
    completion = prompt.code_prompt + body
    try:
        compile(completion, "completion", "exec")
    except (SyntaxError, ValueError):
        return None
    return completion


def _as_body(code: str) -> str:
    """A body indented under the prompt's signature; extraction may have dedented it."""
    first = next((line for line in code.splitlines() if line.strip()), "")
    body = code if first[:1].isspace() else textwrap.indent(code, "    ")
    return body if body.endswith("\n") else body + "\n"
