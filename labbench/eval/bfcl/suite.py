"""The Berkeley Function Calling Leaderboard as built-in suites, read from the installed,
pinned `bfcl-eval` (labbench/eval/bfcl/check.py), so nothing is downloaded at run time:

    suite=bfcl                  the non-live categories (1,390 questions)
    suite=bfcl-live             the live categories (2,251 questions)
    suite=bfcl:multiple,parallel    the categories named, in that order

Prompt ids are BFCL's ids (simple_python_0), categories BFCL's category names. The suite's
fingerprinted file is the package's RECORD, which lists the hash of every file of the release
(data, converter, checker), so another release changes the fingerprint.
"""

import json
from functools import cache
from importlib import metadata
from pathlib import Path

from labbench.eval.bfcl import check as bfclcheck
from labbench.eval.suitetypes import BfclEntry, Prompt, Suite, SuiteError

BFCL = "bfcl"
BFCL_LIVE = "bfcl-live"
NON_LIVE = (
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
)
LIVE = (
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
    "live_relevance",
)
GROUPS = {BFCL: NON_LIVE, BFCL_LIVE: LIVE}
MAX_TOKENS = 512  # BFCL sends none: this is mlx_lm.server's default, what its runner gets there
DATA_PREFIX = "BFCL_v4_"


def is_bfcl_name(name: str) -> bool:
    """A name the BFCL suites reserve: bfcl, bfcl-live, bfcl:..."""
    return name in GROUPS or name.startswith(BFCL + ":")


def categories_of(name: str) -> tuple[str, ...]:
    if name in GROUPS:
        return GROUPS[name]
    listed = tuple(part.strip() for part in name.split(":", 1)[1].split(","))
    known = NON_LIVE + LIVE
    for category in listed:
        if category not in known:
            raise SuiteError(
                f"--suite {name}: no BFCL category {category!r} (categories: {', '.join(known)})"
            )
    if len(set(listed)) != len(listed):
        raise SuiteError(f"--suite {name}: a category is listed twice")
    return listed


def bfcl_suite(name: str) -> Suite:
    """The suite `name` (bfcl, bfcl-live, bfcl:CAT,CAT); raises SuiteError for an unknown
    category and UserError when the pinned bfcl-eval is missing."""
    categories = categories_of(name)
    bfclcheck.bfcl_code()  # the pinned release is installed, or a one-line error
    prompts = tuple(prompt for category in categories for prompt in _prompts(category))
    description = (
        "The Berkeley Function Calling Leaderboard (bfcl-eval "
        f"{bfclcheck.RELEASE}): {', '.join(categories)}; scored by BFCL's ast_checker."
    )
    return Suite(name, description, release_record(), prompts, {}, selection=categories)


def release_record() -> Path:
    files = metadata.distribution("bfcl-eval").files or []
    record = next((f for f in files if f.name == "RECORD" and "dist-info" in str(f)), None)
    if record is None:
        raise SuiteError("bfcl-eval is installed without its RECORD: reinstall it")
    return Path(str(record.locate()))


def data_dir() -> Path:
    import bfcl_eval

    return Path(bfcl_eval.__file__).parent / "data"


@cache
def _prompts(category: str) -> tuple[Prompt, ...]:
    questions = _read_jsonl(data_dir() / f"{DATA_PREFIX}{category}.json")
    answers_file = data_dir() / "possible_answer" / f"{DATA_PREFIX}{category}.json"
    answers = {}
    if not bfclcheck.is_relevance_category(category):
        answers = {row["id"]: row["ground_truth"] for row in _read_jsonl(answers_file)}
    prompts = []
    for question in questions:
        # The tools carry BFCL's language hints; its checker reads the docs without them.
        hinted = bfclcheck.prepared_functions(question["function"], category)
        entry = BfclEntry(
            category=category,
            messages=question["question"][0],
            functions=question["function"],
            tools=bfclcheck.openai_tools(hinted),
            ground_truth=answers.get(question["id"], []),
        )
        prompts.append(
            Prompt.built_in(
                question["id"], category, _last_user_text(entry.messages), MAX_TOKENS, bfcl=entry
            )
        )
    return tuple(prompts)


def _last_user_text(messages: list[dict]) -> str:
    users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


# The forms a server gives calls in: the self-check replays the gold answers in each.
ANSWER_FORMS = ("tool_calls", "hermes", "pythonic")
NO_CALL_ANSWER = "I cannot answer that with the functions I was given."


def request_key(messages: list[dict], tools: list[dict]) -> str:
    """What identifies a question in a request (its text alone does not: BFCL reuses it)."""
    return json.dumps([messages, tools], sort_keys=True)


def gold_calls(prompt: Prompt) -> list[tuple[str, dict]]:
    """The question's gold answer as calls, with the names as sent ("." -> "_"): each
    parameter takes its first acceptable value (inside dicts too), and one whose only value
    is "" (may be left out) is left out. Java and JavaScript values are source text, as BFCL
    asks for them ("true", "new ArrayList<>(Arrays.asList(...))", "[1, 2]")."""
    entry = prompt.bfcl
    assert entry is not None
    calls = []
    for call in entry.ground_truth:
        for name, parameters in call.items():
            doc = next((f for f in entry.functions if f["name"] == name), entry.functions[0])
            properties = doc["parameters"].get("properties", {})
            arguments = {}
            for parameter, values in parameters.items():
                given = [value for value in values if value != ""]
                if given:
                    value = _first_choice(given[0])
                    if entry.category in ("simple_java", "simple_javascript"):
                        value = _source(value, properties.get(parameter, {}), entry.category)
                    arguments[parameter] = value
            calls.append((name.replace(".", "_"), arguments))
    return calls


def _first_choice(value: object) -> object:
    """A dict's gold values are lists of choices too (BFCL's dict_checker)."""
    if isinstance(value, dict):
        chosen = {}
        for key, choices in value.items():
            given = [c for c in choices if c != ""] if isinstance(choices, list) else [choices]
            if given:
                chosen[key] = given[0]
        return chosen
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [_first_choice(v) for v in value]
    return value


def _source(value: object, doc: dict, category: str) -> str:
    kind = doc.get("type", "String")
    items = (doc.get("items") or {}).get("type")
    if category == "simple_java":
        return _java(value, kind, items)
    return _javascript(value, kind)


def _java(value: object, kind: str, items: str | None = None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "long":
        return f"{value}L"
    if kind == "float":
        return f"{value}f"
    if kind == "ArrayList" and isinstance(value, list):
        return f"new ArrayList<>(Arrays.asList({', '.join(_java_item(v, items) for v in value)}))"
    if kind == "Array" and isinstance(value, list):  # BFCL reads its strings unquoted
        return f"new {items or 'Object'}[]{{{', '.join(_java(v, items or 'any') for v in value)}}}"
    if kind == "HashMap" and isinstance(value, dict):
        puts = " ".join(f'put("{k}", {_java_item(v, None)});' for k, v in value.items())
        return f"new HashMap<String, String>() {{{{ {puts} }}}}"
    return str(value)


def _java_item(value: object, kind: str | None) -> str:
    if isinstance(value, str) and kind in (None, "String"):
        return f'"{value}"'
    return _java(value, kind or "any")


def _javascript(value: object, kind: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "Bigint":
        return f"{value}n"
    if isinstance(value, (list, dict)):
        return _javascript_literal(value)
    return str(value)


def _javascript_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, list):
        return f"[{', '.join(map(_javascript_literal, value))}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_javascript_literal(v)}" for k, v in value.items()) + "}"
    return str(value)


def answer_in_form(calls: list[tuple[str, dict]], form: str) -> str | dict:
    """Calls as a server would answer them: the API's `tool_calls`, Hermes/Qwen text or
    pythonic text; no calls: a sentence."""
    if not calls:
        return NO_CALL_ANSWER
    if form == "tool_calls":
        return {
            "tool_calls": [
                {
                    "id": f"call_{index}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
                for index, (name, arguments) in enumerate(calls)
            ]
        }
    if form == "hermes":
        return "\n".join(
            f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"
            for name, arguments in calls
        )
    if form == "pythonic":
        listed = ", ".join(
            f"{name}({', '.join(f'{key}={value!r}' for key, value in arguments.items())})"
            for name, arguments in calls
        )
        return f"[{listed}]"
    raise ValueError(f"no answer form {form!r}")


def gold_answers(suite: Suite, form: str) -> dict[str, str | dict]:
    """request_key -> the gold answer in `form`, for every question of a BFCL suite: what a
    replay server answers to check the whole path."""
    return {
        request_key(suite.request_messages(p), suite.request_tools(p)): answer_in_form(
            gold_calls(p), form
        )
        for p in suite.prompts
    }
