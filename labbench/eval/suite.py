"""Evaluation suites: TOML files in suites/, loaded and checked before any server starts.

A suite has a name, a description, [defaults] (system, max_tokens, tools) that any prompt may
override, one [tools.NAME] OpenAI function schema per tool, and [[prompts]] tables. Every prompt
must expect something (expect_tools, expect_keywords, expect_answer, answer_regex or
expect_tests), so a prompt can never score by default. `expect_tests` is Python test code run
against the code in the answer (labbench/sandbox/execution.py); `exec = false` at the top turns
running it off. Every problem is a SuiteError whose message is one line: "FILE: PROMPT_ID: FIELD:
problem". `suite=humaneval` is built in (labbench/eval/humaneval.py), and so are the BFCL suites
`bfcl`, `bfcl-live` and `bfcl:CATEGORY,...` (labbench/eval/bfcl/suite.py); no suite file may take
their names, since the journal files runs by suite name and reports those their own way.
"""

import re
import sys
import textwrap
from pathlib import Path

from labbench import PROJECT_ROOT
from labbench.core.paths import invocation_dir, user_path
from labbench.eval.bfcl.suite import bfcl_suite, is_bfcl_name
from labbench.eval.humaneval import HUMANEVAL, humaneval_suite
from labbench.eval.suitetypes import ExpectedCall, Prompt, Suite, SuiteError

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomli is installed on 3.10 only: a type check in a 3.11 venv cannot find it
    import tomli as tomllib  # ty: ignore[import-not-found]

SUITES_DIR = PROJECT_ROOT / "suites"
DEFAULT_MAX_TOKENS = 256  # when neither [defaults] nor the prompt sets max_tokens

_TOP_KEYS = ("name", "description", "exec", "defaults", "tools", "prompts")
_DEFAULTS_KEYS = ("system", "max_tokens", "tools")
_TOOL_KEYS = ("description", "parameters")
_PROMPT_KEYS = (
    "id",
    "category",
    "prompt",
    "system",
    "max_tokens",
    "tools",
    "expect_tools",
    "expect_keywords",
    "expect_answer",
    "answer_regex",
    "expect_tests",
    "entry_point",
)
_EXPECTED_CALL_KEYS = ("name", "arguments")


def resolve_suite_path(name_or_path: str) -> Path:
    """An existing file (relative to where the user ran `just`), else suites/NAME.toml."""
    given = user_path(name_or_path)
    if given.is_file():
        return given
    if given.is_dir():
        raise SuiteError(f"--suite {name_or_path}: {given} is a directory, not a suite file")
    file_name = name_or_path if name_or_path.endswith(".toml") else f"{name_or_path}.toml"
    in_suites = SUITES_DIR / file_name
    if in_suites.is_file():
        return in_suites
    available = ", ".join(sorted(path.stem for path in SUITES_DIR.glob("*.toml"))) or "none"
    raise SuiteError(
        f"no suite {name_or_path!r}: no such file in {invocation_dir()}"
        f" and no {_display(in_suites)}"
        f" (available: {available})"
    )


def is_built_in(name: str) -> bool:
    """HumanEval or a BFCL suite: built from a package's data, not a suite file."""
    return name == HUMANEVAL or is_bfcl_name(name)


def load_suite(name_or_path: str) -> Suite:
    if name_or_path == HUMANEVAL:
        return humaneval_suite()
    if is_bfcl_name(name_or_path):
        return bfcl_suite(name_or_path)
    path = resolve_suite_path(name_or_path)
    where = _display(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise _error(where, f"bad TOML: {error}") from None
    except OSError as error:
        raise _error(where, f"cannot read: {error.strerror or error}") from None

    _check_keys(data, _TOP_KEYS, (where,), "")
    name = _string(data.get("name", path.stem), (where,), "name")
    if name == HUMANEVAL:
        raise _error(where, "name", f"{HUMANEVAL} is the built-in HumanEval suite's; name yours")
    if is_bfcl_name(name):
        raise _error(where, "name", f"{name} is reserved for the built-in BFCL suites; name yours")
    description = _string(data.get("description", ""), (where,), "description", allow_empty=True)
    exec_tests = data.get("exec", True)
    if not isinstance(exec_tests, bool):
        raise _error(where, "exec", f"must be true or false, got {_type_name(exec_tests)}")
    tool_schemas = _tool_schemas(data.get("tools", {}), where)

    defaults = _table(data.get("defaults", {}), (where,), "defaults")
    _check_keys(defaults, _DEFAULTS_KEYS, (where,), "defaults.")
    default_system = _optional_string(defaults.get("system"), (where,), "defaults.system")
    default_max_tokens = _positive_int(
        defaults.get("max_tokens", DEFAULT_MAX_TOKENS), (where,), "defaults.max_tokens"
    )
    default_tools = _offered_tools(defaults.get("tools", []), tool_schemas, (where,), "defaults.")

    raw_prompts = data.get("prompts", [])
    if not isinstance(raw_prompts, list) or not all(isinstance(p, dict) for p in raw_prompts):
        raise _error(where, "prompts", "must be [[prompts]] tables")
    if not raw_prompts:
        raise _error(where, "no prompts (add [[prompts]] tables)")

    prompts: list[Prompt] = []
    seen_ids: set[str] = set()
    for number, raw in enumerate(raw_prompts, start=1):
        prompt = _prompt(
            raw,
            number,
            where,
            tool_schemas,
            default_system=default_system,
            default_max_tokens=default_max_tokens,
            default_tools=default_tools,
        )
        if prompt.id in seen_ids:
            raise _error(where, prompt.id, "id", "duplicate id")
        seen_ids.add(prompt.id)
        prompts.append(prompt)
    return Suite(name, description, path, tuple(prompts), tool_schemas, exec_tests)


def prompt_from_table(raw: dict, where: str, tool_schemas: dict[str, dict]) -> Prompt:
    """One prompt table outside a suite file (a GRPO example: labbench/data/grpodata.py),
    checked as a suite's [[prompts]] entry is; errors read "WHERE: ID: FIELD: problem"."""
    return _prompt(
        raw,
        1,
        where,
        tool_schemas,
        default_system=None,
        default_max_tokens=DEFAULT_MAX_TOKENS,
        default_tools=(),
    )


def tool_schemas_of(raw: object, where: str) -> dict[str, dict]:
    """[tools.NAME] tables checked as a suite's are: name -> {description, parameters}."""
    return _tool_schemas(raw, where)


def _prompt(
    raw: dict,
    number: int,
    where: str,
    tool_schemas: dict[str, dict],
    *,
    default_system: str | None,
    default_max_tokens: int,
    default_tools: tuple[str, ...],
) -> Prompt:
    if "id" not in raw:
        raise _error(where, f"prompt #{number}", "id", "missing")
    prompt_id = _string(raw["id"], (where, f"prompt #{number}"), "id")
    context = (where, prompt_id)
    _check_keys(raw, _PROMPT_KEYS, context, "")
    for required in ("category", "prompt"):
        if required not in raw:
            raise _error(*context, required, "missing")

    tools = (
        _offered_tools(raw["tools"], tool_schemas, context, "") if "tools" in raw else default_tools
    )
    expect_tools = (
        _expected_calls(raw["expect_tools"], tools, tool_schemas, context)
        if "expect_tools" in raw
        else None
    )
    expect_answer = raw.get("expect_answer")
    if isinstance(expect_answer, (int, float)) and not isinstance(expect_answer, bool):
        expect_answer = str(expect_answer)  # `expect_answer = 100` means "100"
    expect_answer = _optional_string(expect_answer, context, "expect_answer")
    answer_regex = _optional_string(raw.get("answer_regex"), context, "answer_regex")
    if expect_answer is not None and answer_regex is not None:
        raise _error(*context, "answer_regex", "give expect_answer or answer_regex, not both")
    if answer_regex is not None:
        try:
            re.compile(answer_regex)
        except re.error as error:
            raise _error(*context, "answer_regex", f"invalid regex: {error}") from None
    expect_keywords = _string_list(raw.get("expect_keywords", []), context, "expect_keywords")
    expect_tests = _optional_string(raw.get("expect_tests"), context, "expect_tests")
    if expect_tests is not None:
        expect_tests = textwrap.dedent(expect_tests)  # indented to sit under its key in TOML
        check_test_code(expect_tests, context)
    entry_point = _optional_string(raw.get("entry_point"), context, "entry_point")
    if entry_point is not None:
        if expect_tests is None:
            raise _error(*context, "entry_point", "goes with expect_tests")
        if not entry_point.isidentifier():
            raise _error(*context, "entry_point", f"not a Python name: {entry_point!r}")
    answer_parts = (expect_answer or answer_regex or expect_tests) is not None
    if expect_tools is None and not expect_keywords and not answer_parts:
        raise _error(
            *context,
            "expects nothing: give expect_tools (may be []), expect_keywords,"
            " expect_answer, answer_regex or expect_tests",
        )

    return Prompt(
        id=prompt_id,
        category=_string(raw["category"], context, "category"),
        prompt=_string(raw["prompt"], context, "prompt"),
        system=_optional_string(raw["system"], context, "system")
        if "system" in raw
        else default_system,
        max_tokens=_positive_int(raw.get("max_tokens", default_max_tokens), context, "max_tokens"),
        tools=tools,
        expect_tools=expect_tools,
        expect_keywords=expect_keywords,
        expect_answer=expect_answer,
        answer_regex=answer_regex,
        expect_tests=expect_tests,
        entry_point=entry_point,
    )


def check_test_code(code: str, context: tuple[str, ...]) -> None:
    """Test code must compile: a typo is found when the suite loads, not as every model failing."""
    try:
        compile(code, "expect_tests", "exec")
    except (SyntaxError, ValueError) as error:
        line = getattr(error, "lineno", None)
        where = f"line {line}: " if line else ""
        message = getattr(error, "msg", None) or str(error)
        raise _error(*context, "expect_tests", f"{where}does not compile: {message}") from None


def _tool_schemas(raw: object, where: str) -> dict[str, dict]:
    schemas: dict[str, dict] = {}
    for name, schema in _table(raw, (where,), "tools").items():
        field = f"tools.{name}"
        schema = _table(schema, (where,), field)
        _check_keys(schema, _TOOL_KEYS, (where,), field + ".")
        if "description" not in schema:
            raise _error(where, f"{field}.description", "missing")
        if "parameters" not in schema:
            raise _error(where, f"{field}.parameters", "missing")
        schemas[name] = {
            "description": _string(schema["description"], (where,), f"{field}.description"),
            "parameters": _table(schema["parameters"], (where,), f"{field}.parameters"),
        }
    return schemas


def _offered_tools(
    raw: object, tool_schemas: dict[str, dict], context: tuple[str, ...], prefix: str
) -> tuple[str, ...]:
    field = prefix + "tools"
    names = _string_list(raw, context, field)
    for name in names:
        if name not in tool_schemas:
            raise _error(*context, field, f"no [tools.{name}] schema for {name!r}")
    if len(set(names)) != len(names):
        raise _error(*context, field, "a tool is listed twice")
    return names


def _expected_calls(
    raw: object,
    offered: tuple[str, ...],
    tool_schemas: dict[str, dict],
    context: tuple[str, ...],
) -> tuple[ExpectedCall, ...]:
    if not isinstance(raw, list):
        raise _error(*context, "expect_tools", "must be a list of {name, arguments} tables")
    calls = []
    for index, item in enumerate(raw):
        field = f"expect_tools[{index}]"
        item = _table(item, context, field)
        _check_keys(item, _EXPECTED_CALL_KEYS, context, field + ".")
        if "name" not in item:
            raise _error(*context, f"{field}.name", "missing")
        name = _string(item["name"], context, f"{field}.name")
        if name not in tool_schemas:
            raise _error(*context, f"{field}.name", f"no [tools.{name}] schema for {name!r}")
        if name not in offered:
            raise _error(
                *context, f"{field}.name", f"{name!r} is not offered to this prompt (tools)"
            )
        arguments = _table(item.get("arguments", {}), context, f"{field}.arguments")
        known = tool_schemas[name]["parameters"].get("properties")
        if isinstance(known, dict):
            for argument in arguments:
                if argument not in known:
                    raise _error(
                        *context,
                        f"{field}.arguments.{argument}",
                        f"not a parameter of {name} (has: {', '.join(known) or 'none'})",
                    )
        calls.append(ExpectedCall(name, dict(arguments)))
    return tuple(calls)


def _error(*parts: str) -> SuiteError:
    return SuiteError(": ".join(parts).replace("\n", " "))


def _display(path: Path) -> str:
    """The path relative to the working directory when it is under it, so messages stay short."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _check_keys(table: dict, allowed: tuple[str, ...], context: tuple[str, ...], prefix: str):
    for key in table:
        if key not in allowed:
            raise _error(
                *context, prefix + key, f"unknown key (expected one of: {', '.join(allowed)})"
            )


def _type_name(value: object) -> str:
    names: dict[type, str] = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _table(value: object, context: tuple[str, ...], field: str) -> dict:
    if not isinstance(value, dict):
        raise _error(*context, field, f"must be a table, got {_type_name(value)}")
    return value


def _string(value: object, context: tuple[str, ...], field: str, allow_empty=False) -> str:
    if not isinstance(value, str):
        raise _error(*context, field, f"must be a string, got {_type_name(value)}")
    if not allow_empty and not value.strip():
        raise _error(*context, field, "must not be empty")
    return value


def _optional_string(value: object, context: tuple[str, ...], field: str) -> str | None:
    return None if value is None else _string(value, context, field)


def _string_list(value: object, context: tuple[str, ...], field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _error(*context, field, "must be a list of strings")
    if not all(item.strip() for item in value):
        raise _error(*context, field, "must not contain empty strings")
    return tuple(value)


def _positive_int(value: object, context: tuple[str, ...], field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(*context, field, f"must be a positive integer, got {value!r}")
    return value
