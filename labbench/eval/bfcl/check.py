"""BFCL's own code, imported from the pinned `bfcl-eval` without its ~150 dependencies, and the
glue that asks and scores a question the way BFCL's runner does.

`bfcl-eval` is installed with `pip install --no-deps` (README). Its checker needs only the
standard library once `bfcl_eval.constants.model_config` (which imports every vendor SDK) is
replaced by a stub saying what the OpenAI-style entries say: names were sent with "." as "_".
Its tree-sitter parsers decode Java/JavaScript *prompting* answers, which we never ask for, so
they are stubbed too; everything else is BFCL's code, called as it is:
- tools: `model_handler.utils.convert_to_tool` after `utils._func_doc_language_specific_
  pre_processing` (what `load_dataset_entry` does), as the OpenAI chat-completions handler sends;
- answers: `{name: json.loads(arguments)}` per `tool_calls` item, as that handler decodes them
  (our own text parsers, labbench/eval/toolcalls.py, decode answers given as text);
- verdicts: `ast_checker` for the AST categories, `is_empty_output` for (ir)relevance, behind
  the runner's own decode and format checks (`eval_checker/eval_runner.py`).
"""

import copy
import json
import os
import sys
import tempfile
import types
from dataclasses import dataclass
from functools import cache

from labbench.core.errors import UserError
from labbench.eval.toolcalls import DECODED_NONE, decode_tool_calls

RELEASE = "2026.3.23"  # the pinned bfcl-eval: its data, converter and checker
INSTALL = f"pip install --no-deps bfcl-eval=={RELEASE}"
MODEL_NAME = "labbench"  # what the checker is told the model is called (only for name mapping)

# Our names for BFCL's error types, the table the report and journal show.
WRONG_FUNCTION = "wrong function"
MISSING_REQUIRED = "missing required"
UNEXPECTED_PARAMETER = "unexpected parameter"
WRONG_TYPE = "wrong value type"
WRONG_VALUE = "wrong value"
WRONG_COUNT = "wrong count"
NO_CALL = "no call"
UNDUE_CALL = "call where none was due"
CUT_OFF = "cut off at max_tokens"
ERROR_KINDS = (
    WRONG_FUNCTION,
    MISSING_REQUIRED,
    UNEXPECTED_PARAMETER,
    WRONG_TYPE,
    WRONG_VALUE,
    WRONG_COUNT,
    NO_CALL,
    UNDUE_CALL,
    CUT_OFF,
)


class _OpenAIStyle:
    underscore_to_dot = True  # names went out with "." replaced by "_" (convert_to_tool)


class _EveryModel(dict):
    def __missing__(self, key):
        return _OpenAIStyle()


@cache
def bfcl_code() -> types.SimpleNamespace:
    """BFCL's functions we call. Raises UserError when the pinned release is not installed."""
    from importlib import metadata

    try:
        installed = metadata.version("bfcl-eval")
    except metadata.PackageNotFoundError:
        installed = None
    if installed != RELEASE:
        found = f"found {installed}" if installed else "it is not installed"
        raise UserError(f"the BFCL suites need bfcl-eval {RELEASE} ({found}): {INSTALL}")
    # Importing bfcl_eval.utils makes result/ and score/ folders under BFCL_PROJECT_ROOT
    # (by default inside site-packages): point it at a scratch folder instead.
    os.environ.setdefault("BFCL_PROJECT_ROOT", os.path.join(tempfile.gettempdir(), "labbench-bfcl"))
    stubs = {
        "bfcl_eval.constants.model_config": {"MODEL_CONFIG_MAPPING": _EveryModel()},
        "bfcl_eval.model_handler.parser.java_parser": {"parse_java_function_call": None},
        "bfcl_eval.model_handler.parser.js_parser": {"parse_javascript_function_call": None},
    }
    for name, attributes in stubs.items():
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__dict__.update(attributes)
            sys.modules[name] = module
    from bfcl_eval.constants.enums import Language, ModelStyle
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    from bfcl_eval.model_handler.utils import convert_to_tool
    from bfcl_eval.utils import (
        _func_doc_language_specific_pre_processing,
        is_empty_output,
        is_function_calling_format_output,
    )

    return types.SimpleNamespace(
        ast_checker=ast_checker,
        is_empty_output=is_empty_output,
        is_function_calling_format_output=is_function_calling_format_output,
        language_hints=_func_doc_language_specific_pre_processing,
        tools=lambda functions: convert_to_tool(
            functions, GORILLA_TO_OPENAPI, ModelStyle.OPENAI_COMPLETIONS
        ),
        Language=Language,
    )


def prepared_functions(functions: list[dict], category: str) -> list[dict]:
    """The question's function docs as BFCL's loader leaves them (language hints added)."""
    return bfcl_code().language_hints(copy.deepcopy(functions), category)


def openai_tools(functions: list[dict]) -> list[dict]:
    """The request's `tools`, converted by BFCL's own converter ("." in names -> "_")."""
    return bfcl_code().tools(functions)


def is_relevance_category(category: str) -> bool:
    return "relevance" in category  # irrelevance, live_irrelevance, live_relevance


def language(category: str):
    code = bfcl_code()
    if category.endswith("java"):
        return code.Language.JAVA
    if category.endswith("javascript"):
        return code.Language.JAVASCRIPT
    return code.Language.PYTHON


@dataclass(frozen=True)
class Decoded:
    calls: list | None  # [{name: {param: value}}]; None when the answer did not decode
    how: str  # "tool_calls", "text:<format>" or "none"
    error: str | None = None  # why it did not decode


def decode_api_calls(tool_calls: list) -> Decoded:
    """An answer's `tool_calls` as BFCL's OpenAI handler decodes them."""
    try:
        calls = [
            {call["function"]["name"]: json.loads(call["function"]["arguments"])}
            for call in tool_calls
        ]
    except (KeyError, TypeError, ValueError) as error:
        return Decoded(None, "tool_calls", f"Invalid syntax. Failed to decode AST. {error!r}")
    return Decoded(calls, "tool_calls")


def decode_answer(content: str | None, tool_calls: list | None) -> Decoded:
    """The calls of an answer: its `tool_calls` when it has some, as BFCL decodes them; else
    the calls our parsers find in its text; else none (which BFCL counts as not decoding)."""
    if tool_calls:
        return decode_api_calls(tool_calls)
    calls, how = decode_tool_calls(content, keep_repeats=True)
    if not calls:
        return Decoded(None, DECODED_NONE, "no function call in the answer")
    return Decoded([{call.name: call.arguments} for call in calls], how)


def as_rows(decoded: Decoded) -> list[dict]:
    """The decoded calls as the ledger stores calls: [{"name", "arguments"}]."""
    pairs = [pair for call in decoded.calls or [] for pair in call.items()]
    return [{"name": name, "arguments": arguments} for name, arguments in pairs]


def from_rows(rows: list[dict], how: str | None) -> Decoded:
    """The Decoded that as_rows stored (an undecodable answer comes back as no calls)."""
    if not rows:
        return Decoded(None, how or DECODED_NONE, "no function call in the answer")
    return Decoded([{row["name"]: row["arguments"]} for row in rows], how or DECODED_NONE)


def scored_row(entry, decoded: Decoded, finish_reason: str | None) -> dict:
    """The ledger columns of an answered BFCL question: score 1 or 0 by BFCL's verdict, its
    error type and text, our kind of error, and an explanation line."""
    verdict = check(entry, decoded, finish_reason)
    if verdict.valid:
        explanation = f"passed BFCL's check ({entry.category}); calls decoded from {decoded.how}"
    else:
        explanation = (
            f"{verdict.kind}: {verdict.error_type}; calls decoded from {decoded.how}"
            f"\n{verdict.error_text}"
        )
    return {
        "score": 1.0 if verdict.valid else 0.0,
        "explanation": explanation,
        "error_type": verdict.error_type,
        "error_kind": verdict.kind,
        "error_text": verdict.error_text,
    }


@dataclass(frozen=True)
class Verdict:
    valid: bool
    error_type: str | None  # BFCL's, e.g. simple_function_checker:missing_required
    error_text: str | None  # BFCL's error list, as JSON
    kind: str | None  # ours, one of ERROR_KINDS


def check(entry, decoded: Decoded, finish_reason: str | None) -> Verdict:
    """The verdict BFCL's runner gives this decoded answer to the question `entry`
    (suitetypes.BfclEntry)."""
    code = bfcl_code()
    if is_relevance_category(entry.category):
        called = decoded.calls is not None and not code.is_empty_output(decoded.calls)
        if "irrelevance" in entry.category:
            if not called:
                return Verdict(True, None, None, None)
            error = ["Valid syntax. Successfully decode AST when it should not."]
            return _failed("irrelevance_error:decoder_success", error, finish_reason)
        if called:
            return Verdict(True, None, None, None)
        error = [f"Invalid syntax. Failed to decode AST when it should have. {decoded.error}"]
        return _failed("relevance_error:decoder_failed", error, finish_reason)
    if decoded.calls is None:
        return _failed("ast_decoder:decoder_failed", [decoded.error], finish_reason)
    if not code.is_function_calling_format_output(decoded.calls):
        error = ["Did not output in the specified format."]
        return _failed("ast_decoder:decoder_wrong_output_format", error, finish_reason)
    result = code.ast_checker(
        entry.functions,
        decoded.calls,
        entry.ground_truth,
        language(entry.category),
        entry.category,
        MODEL_NAME,
    )
    if result["valid"]:
        return Verdict(True, None, None, None)
    return _failed(result["error_type"], result["error"], finish_reason, decoded.calls)


def _failed(error_type: str, error: list, finish_reason: str | None, calls=None) -> Verdict:
    """A failed verdict. Missing or too few calls in an answer cut off at max_tokens are
    named for the cut: the calls may have been on their way."""
    text = json.dumps(error, default=repr, ensure_ascii=False)
    kind = error_kind(error_type, error, calls)
    if finish_reason == "length" and kind in (NO_CALL, WRONG_COUNT):
        kind = CUT_OFF
    return Verdict(False, error_type, text, kind)


def error_kind(error_type: str, error: list, calls: list | None = None) -> str:
    """Our name for one of BFCL's error types. A parallel answer no gold call matched takes
    the reason of its closest attempt: the first that called the right function."""
    if error_type.endswith("cannot_find_match"):
        reasons = [
            attempt["sub_error_type"]
            for item in error
            if isinstance(item, dict)
            for attempt in item.values()
            if isinstance(attempt, dict) and "sub_error_type" in attempt
        ]
        closer = [reason for reason in reasons if not reason.endswith("wrong_func_name")]
        return error_kind((closer or reasons or ["value_error"])[0], [])
    if error_type.startswith("irrelevance_error"):
        return UNDUE_CALL
    if error_type.startswith(("relevance_error", "ast_decoder")):
        return NO_CALL
    if error_type.endswith("wrong_func_name"):
        return WRONG_FUNCTION
    if error_type.endswith("missing_required"):
        return MISSING_REQUIRED
    if error_type.endswith("unexpected_param"):
        return UNEXPECTED_PARAMETER
    if error_type.startswith("type_error"):
        return WRONG_TYPE
    if error_type.endswith("wrong_count"):
        return NO_CALL if calls == [] else WRONG_COUNT
    return WRONG_VALUE  # value_error:*, dict/list checkers, missing_optional
