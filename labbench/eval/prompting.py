"""One prompt of an eval: its request, the server's answer as a ledger row, and that row
scored, running the prompt's tests on the answer's code when it has some
(labbench/eval/evaluation.py runs many at once).
"""

import os
import time

from labbench.core.settings import EvalSettings, SamplingSettings
from labbench.eval.bfcl import check as bfclcheck
from labbench.eval.codetests import run_answer_tests
from labbench.eval.scoring import failed_score, score_response
from labbench.eval.suitetypes import Prompt, Suite
from labbench.eval.toolcalls import ToolCall, decode_tool_calls
from labbench.serving.chatclient import Endpoint, ServerGone, post_chat, short_error

DEFAULTS = EvalSettings()


def build_request(
    suite: Suite, prompt: Prompt, endpoint: Endpoint, sampling: SamplingSettings, epoch: int = 1
):
    payload: dict = {
        "messages": suite.request_messages(prompt),
        "max_tokens": sampling.max_tokens or prompt.max_tokens,
        "temperature": sampling.temperature,
        "stop": list(sampling.stop),
    }
    if sampling.seed is not None:
        # Each epoch its own seed, so repeats at temperature > 0 are distinct samples.
        payload["seed"] = sampling.seed + epoch - 1
    if endpoint.model is not None:
        payload["model"] = endpoint.model
    tools = suite.request_tools(prompt)
    if tools:
        payload["tools"] = tools
    return payload


def ask(
    suite: Suite, prompt: Prompt, endpoint: Endpoint, sampling: SamplingSettings, epoch: int = 1
) -> dict:
    """The request's part of one sample's ledger row: the answer, or the error the request met
    (then the row is complete, scored 0). ServerGone propagates. finish_row scores it."""
    started = time.perf_counter()
    row: dict = {"prompt_id": prompt.id, "category": prompt.category, "epoch": epoch}
    try:
        answer = post_chat(endpoint, build_request(suite, prompt, endpoint, sampling, epoch))
        choice = answer["choices"][0]
        message = choice.get("message") or {}
        content = message.get("content")
        usage = answer.get("usage") or {}
        row |= {
            "response": content,
            "finish_reason": choice.get("finish_reason"),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
        }
        if prompt.bfcl is not None:  # decoded and checked BFCL's way, here: no tests to run
            decoded = bfclcheck.decode_answer(content, message.get("tool_calls"))
            row |= {"decoded_as": decoded.how, "tool_calls": bfclcheck.as_rows(decoded)}
            row |= bfclcheck.scored_row(prompt.bfcl, decoded, row["finish_reason"])
        else:
            calls, how = decode_tool_calls(content, message.get("tool_calls"))
            row["tool_calls"] = [{"name": c.name, "arguments": c.arguments} for c in calls]
            row["decoded_as"] = how
    except ServerGone:
        raise
    except (RuntimeError, KeyError, IndexError, TypeError, AttributeError) as error:
        message = (
            short_error(error) if isinstance(error, RuntimeError) else f"bad answer: {error!r}"
        )
        score = failed_score(message)
        row |= {"error": message, "score": score.score, "explanation": score.explanation}
    row["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return row


TOO_LONG = "too long for the model's context"


def too_long_row(prompt: Prompt, epoch: int, tokens: int, max_tokens: int, context: int) -> dict:
    """The row of a prompt that was not sent: it cannot fit the model's context."""
    return {
        "prompt_id": prompt.id,
        "category": prompt.category,
        "epoch": epoch,
        "tool_calls": [],
        "prompt_tokens": tokens,
        "score": 0.0,
        "explanation": f"{TOO_LONG}: {tokens} prompt tokens + {max_tokens} max_tokens"
        f" > {context}; not sent",
        "error_kind": TOO_LONG,
    }


def needs_tests(suite: Suite, prompt: Prompt, row: dict) -> bool:
    """Whether finishing this row runs code (answered, with tests, execution on)."""
    return prompt.expect_tests is not None and suite.exec_tests and "error" not in row


def finish_row(suite: Suite, prompt: Prompt, row: dict) -> dict:
    """The row scored, after running the prompt's tests on the answer's code when they apply."""
    if "error" in row:
        return row
    tests = None
    if needs_tests(suite, prompt, row):
        tests = run_answer_tests(prompt, row["response"], DEFAULTS.tests_timeout_s)
        row |= {"tests_verdict": tests.verdict, "tests_output": tests.output}
    if prompt.bfcl is not None:
        return row  # scored as it was decoded (ask)
    calls = [ToolCall(call["name"], call["arguments"]) for call in row["tool_calls"]]
    score = score_response(prompt, row["response"], calls, row["finish_reason"], tests)
    return row | {"score": score.score, "explanation": score.explanation}


def tests_workers() -> int:
    """Test runs at once: one per core, so generation keeps the rest of the machine busy."""
    return os.cpu_count() or 1
