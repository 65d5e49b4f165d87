"""BFCL built in: the suites come from the pinned bfcl-eval, the tools are BFCL's conversion,
and every verdict is BFCL's own checker's. The gold answers, in each form a server gives calls
in, pass in process for every entry of both suites (the self-check through a replay server is
test_bfcl_replay.py); the few that cannot pass are named here with the reason."""

import json
from pathlib import Path

import pytest

from labbench.core.errors import UserError
from labbench.eval.bfcl import check as bfclcheck
from labbench.eval.bfcl import suite as bfcl
from labbench.eval.bfcl.summary import error_table, leaderboard
from labbench.eval.suite import load_suite
from labbench.eval.suitetypes import BfclEntry, SuiteError

SUITES = {name: load_suite(name) for name in ("bfcl", "bfcl-live")}
PROMPTS = {p.id: p for suite in SUITES.values() for p in suite.prompts}


def entry_of(prompt) -> BfclEntry:
    assert prompt.bfcl is not None
    return prompt.bfcl


# Gold answers that no answer built from them can pass, and why. The same in every form...
GOLD_QUIRKS = {
    "simple_java_36": "a String list whose gold holds an int and a bool the checker never parses",
    "simple_java_64": "a HashMap whose gold values are strings, which the checker reads as lists",
    "simple_java_65": "a String list whose gold holds bools the checker never parses",
    "parallel_multiple_12": "the gold allows `permeability`, which the function does not have",
    "parallel_multiple_26": "the gold allows a parameter the function does not have",
    "live_simple_106-63-0": "a required parameter the gold lets the answer leave out",
    "live_simple_112-68-0": "a required parameter the gold lets the answer leave out",
    "live_multiple_507-149-4": "a required parameter the gold lets the answer leave out",
    "live_multiple_862-181-3": "the gold allows a parameter the function does not have",
    "live_multiple_964-207-0": "a required parameter the gold lets the answer leave out",
}
# ...and the pythonic form cannot name a parameter that is a Python keyword.
PYTHONIC_ONLY = {
    "simple_java_62": "its parameter `from` is a Python keyword: [f(from=...)] does not parse",
    "simple_java_63": "its parameter `from` is a Python keyword: [f(from=...)] does not parse",
}
EXPECTED_MISSES = {
    "tool_calls": GOLD_QUIRKS,
    "hermes": GOLD_QUIRKS,
    "pythonic": GOLD_QUIRKS | PYTHONIC_ONLY,
}


def as_message(answer: str | dict) -> dict:
    return answer if isinstance(answer, dict) else {"content": answer}


def verdict_of(prompt, answer: str | dict, finish_reason: str = "stop") -> bfclcheck.Verdict:
    message = as_message(answer)
    decoded = bfclcheck.decode_answer(message.get("content"), message.get("tool_calls"))
    return bfclcheck.check(entry_of(prompt), decoded, finish_reason)


def test_the_suites_are_bfcls_categories_read_from_the_pinned_package():
    non_live, live = SUITES["bfcl"], SUITES["bfcl-live"]
    assert (len(non_live.prompts), len(live.prompts)) == (1390, 2251)
    assert non_live.categories == list(bfcl.NON_LIVE)
    assert live.categories == list(bfcl.LIVE)
    first = non_live.prompts[0]
    assert (first.id, first.category) == ("simple_python_0", "simple_python")
    # The fingerprinted file lists the hash of every file of the installed release.
    assert non_live.path.name == "RECORD" and "bfcl_eval-2026.3.23" in str(non_live.path)
    assert "bfcl_eval/data/BFCL_v4_simple_python.json" in non_live.path.read_text()
    chosen = load_suite("bfcl:parallel,multiple")
    assert chosen.categories == ["parallel", "multiple"] and len(chosen.prompts) == 400
    assert chosen.selection == ("parallel", "multiple")


def test_tools_are_bfcls_conversion_with_dots_in_names_replaced():
    dotted = next(p for p in SUITES["bfcl"].prompts if "." in entry_of(p).functions[0]["name"])
    [tool] = SUITES["bfcl"].request_tools(dotted)
    original = entry_of(dotted).functions[0]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == original["name"].replace(".", "_")
    assert tool["function"]["parameters"]["type"] == "object"  # Gorilla's "dict"
    assert tool["function"]["description"].endswith(
        "Note that the provided function is in Python 3 syntax."
    )
    java = entry_of(PROMPTS["simple_java_0"])
    types = {p["type"] for p in java.tools[0]["function"]["parameters"]["properties"].values()}
    assert types == {"string"}  # BFCL asks for Java values as source text
    assert {p["type"] for p in java.functions[0]["parameters"]["properties"].values()} != {
        "string"
    }  # the checker reads the typed docs
    assert SUITES["bfcl"].request_messages(PROMPTS["simple_java_0"]) == java.messages


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bfcl:multiple,nope", "no BFCL category 'nope'"),
        ("bfcl:multiple,multiple", "listed twice"),
    ],
)
def test_a_bad_category_is_one_line_naming_it(name, message):
    with pytest.raises(SuiteError, match=message):
        load_suite(name)


def test_a_suite_file_may_not_take_a_bfcl_name(tmp_path: Path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "bfcl-live"\n[[prompts]]\nid = "a"\ncategory = "c"\nprompt = "p"\n'
        'expect_answer = "x"\n'
    )
    with pytest.raises(SuiteError, match="reserved for the built-in BFCL suites"):
        load_suite(str(path))


def test_a_missing_or_other_release_is_an_error_naming_the_install(monkeypatch):
    from importlib import metadata

    bfclcheck.bfcl_code.cache_clear()
    monkeypatch.setattr(metadata, "version", lambda name: "2025.1.1")
    try:
        with pytest.raises(UserError, match=r"need bfcl-eval 2026\.3\.23 \(found 2025\.1\.1\)"):
            bfclcheck.bfcl_code()
    finally:
        monkeypatch.undo()
        bfclcheck.bfcl_code.cache_clear()
    assert bfclcheck.bfcl_code().ast_checker is not None


@pytest.mark.parametrize("form", bfcl.ANSWER_FORMS)
def test_gold_answers_pass_in_every_form_but_the_named_ones(form):
    misses = {}
    ast_entries = 0
    for prompt in PROMPTS.values():
        if bfclcheck.is_relevance_category(prompt.category):
            continue
        ast_entries += 1
        verdict = verdict_of(prompt, bfcl.answer_in_form(bfcl.gold_calls(prompt), form))
        if not verdict.valid:
            misses[prompt.id] = verdict.error_type
    assert set(misses) == set(EXPECTED_MISSES[form]), misses
    assert ast_entries == 1150 + 1351
    assert 1 - len(misses) / ast_entries >= 0.99


def test_stored_verdict_is_ast_checkers_on_the_same_calls():
    """scored_row's verdict against ast_checker called directly, for every AST entry."""
    for prompt in PROMPTS.values():
        entry = entry_of(prompt)
        if bfclcheck.is_relevance_category(prompt.category):
            continue
        answer = bfcl.answer_in_form(bfcl.gold_calls(prompt), "tool_calls")
        assert isinstance(answer, dict)
        decoded = bfclcheck.decode_answer(None, answer["tool_calls"])
        row = bfclcheck.scored_row(entry, decoded, "stop")
        assert decoded.calls is not None  # the gold calls always decode
        direct = ast_checkers_verdict(entry, decoded.calls)
        assert (row["score"] == 1.0) == direct["valid"], prompt.id
        assert row["error_type"] == direct.get("error_type") if not direct["valid"] else True


def ast_checkers_verdict(entry: BfclEntry, calls: list) -> dict:
    """BFCL's ast_checker called directly on decoded calls."""
    return bfclcheck.bfcl_code().ast_checker(
        entry.functions,
        calls,
        entry.ground_truth,
        bfclcheck.language(entry.category),
        entry.category,
        bfclcheck.MODEL_NAME,
    )


def mutated(prompt_id: str, change) -> bfclcheck.Verdict:
    prompt = PROMPTS[prompt_id]
    calls = [(name, dict(arguments)) for name, arguments in bfcl.gold_calls(prompt)]
    return verdict_of(prompt, bfcl.answer_in_form(change(calls), "tool_calls"))


def set_argument(key, value):
    def change(calls):
        calls[0][1][key] = value
        return calls

    return change


def drop_argument(key):
    def change(calls):
        del calls[0][1][key]
        return calls

    return change


@pytest.mark.parametrize(
    ("prompt_id", "change", "error_type", "kind"),
    [
        # simple_python_0: calculate_triangle_area(base=10, height=5)
        ("simple_python_0", set_argument("base", 11), "value_error:others", "wrong value"),
        ("simple_python_0", set_argument("base", "10"), "type_error:simple", "wrong value type"),
        (
            "simple_python_0",
            drop_argument("height"),
            "simple_function_checker:missing_required",
            "missing required",
        ),
        (
            "simple_python_0",
            set_argument("colour", "red"),
            "simple_function_checker:unexpected_param",
            "unexpected parameter",
        ),
        (
            "simple_python_0",
            lambda calls: [("calculate_circle_area", calls[0][1])],
            "simple_function_checker:wrong_func_name",
            "wrong function",
        ),
        (
            "parallel_0",
            lambda calls: calls[:-1],
            "parallel_function_checker_no_order:wrong_count",
            "wrong count",
        ),
        (
            "parallel_0",
            lambda calls: [calls[0], calls[0]],
            "parallel_function_checker_no_order:cannot_find_match",
            "wrong value",
        ),
        ("simple_python_0", lambda calls: [], "ast_decoder:decoder_failed", "no call"),
    ],
)
def test_mutated_answers_fail_with_the_expected_error_type(prompt_id, change, error_type, kind):
    verdict = mutated(prompt_id, change)
    assert not verdict.valid
    assert (verdict.error_type, verdict.kind) == (error_type, kind)
    assert json.loads(verdict.error_text or "")


def test_an_answer_cut_off_at_max_tokens_is_named_so():
    prompt = PROMPTS["simple_python_0"]
    verdict = verdict_of(prompt, '<tool_call>\n{"name": "calculate_tri', "length")
    assert (verdict.valid, verdict.error_type, verdict.kind) == (
        False,
        "ast_decoder:decoder_failed",
        "cut off at max_tokens",
    )


@pytest.mark.parametrize("category", ["irrelevance", "live_irrelevance"])
def test_irrelevance_passes_no_call_and_fails_any_call(category):
    prompts = [p for p in PROMPTS.values() if p.category == category]
    for prompt in prompts:
        assert verdict_of(prompt, bfcl.NO_CALL_ANSWER).valid
        tools = entry_of(prompt).tools  # some live questions offer none: any call is still a call
        function = tools[0]["function"]["name"] if tools else "search"
        for form in bfcl.ANSWER_FORMS:
            verdict = verdict_of(prompt, bfcl.answer_in_form([(function, {})], form))
            assert (verdict.valid, verdict.kind) == (False, "call where none was due"), prompt.id
            assert verdict.error_type == "irrelevance_error:decoder_success"


def test_relevance_passes_any_call_and_fails_none():
    for prompt in (p for p in PROMPTS.values() if p.category == "live_relevance"):
        function = entry_of(prompt).tools[0]["function"]["name"]
        assert verdict_of(prompt, bfcl.answer_in_form([(function, {"x": 1})], "hermes")).valid
        verdict = verdict_of(prompt, bfcl.NO_CALL_ANSWER)
        assert (verdict.valid, verdict.kind) == (False, "no call")


def test_each_answer_says_how_its_calls_were_decoded():
    prompt = PROMPTS["simple_python_0"]
    calls = bfcl.gold_calls(prompt)
    ways = {}
    for form in bfcl.ANSWER_FORMS:
        message = as_message(bfcl.answer_in_form(calls, form))
        ways[form] = bfclcheck.decode_answer(message.get("content"), message.get("tool_calls")).how
    assert ways == {
        "tool_calls": "tool_calls",
        "hermes": "text:hermes",
        "pythonic": "text:pythonic",
    }
    assert bfclcheck.decode_answer("no idea", None).how == "none"
    bad = [{"function": {"name": "f", "arguments": "{not json"}}]
    decoded = bfclcheck.decode_answer(None, bad)
    assert (decoded.calls, decoded.how) == (None, "tool_calls")
    assert "decode" in (decoded.error or "")


def row(category: str, score: float) -> dict:
    return {"category": category, "score": score}


def test_summaries_are_computed_as_bfcls_runner_computes_them():
    rows = (
        [row("simple_python", 1)] * 3 + [row("simple_python", 0)]  # 75 %
        + [row("simple_java", 1)] * 1 + [row("simple_java", 0)]  # 50 %
        + [row("simple_javascript", 0)] * 2  # 0 %
        + [row("multiple", 1)] * 2 + [row("parallel", 1)] + [row("parallel_multiple", 0)]
        + [row("irrelevance", 1)] * 3 + [row("irrelevance", 0)]
        + [row("live_simple", 1)] * 9 + [row("live_multiple", 0)]
        + [row("live_parallel", 1)] + [row("live_parallel_multiple", 1)]
        + [row("live_irrelevance", 0)] * 4
    )  # fmt: skip
    summaries = leaderboard(rows)
    assert summaries["simple"]["score"] == pytest.approx((0.75 + 0.5 + 0) / 3)
    assert summaries["non-live"]["score"] == pytest.approx(((0.75 + 0.5 + 0) / 3 + 1 + 1 + 0) / 4)
    assert summaries["live"]["score"] == pytest.approx(11 / 12)  # weighted by count
    assert summaries["irrelevance"]["score"] == pytest.approx((0.75 + 0) / 2)
    assert "relevance" not in summaries
    for summary in summaries.values():
        assert summary["ci_low"] <= summary["score"] <= summary["ci_high"]
        assert summary["ci_high"] - summary["ci_low"] > 0
    assert summaries["non-live"]["prompts"] == 12
    # A run without java has no simple and no non-live: those would not be BFCL's numbers.
    partial = leaderboard([r for r in rows if r["category"] != "simple_java"])
    assert "simple" not in partial and "non-live" not in partial and "live" in partial


def test_error_table_counts_kinds_per_category():
    headers, rows = error_table(
        [
            {"category": "simple_python", "error_kind": "wrong value"},
            {"category": "simple_python", "error_kind": None},
            {"category": "parallel", "error_kind": "wrong count"},
            {"category": "parallel", "error_kind": "wrong value"},
        ]
    )
    assert headers == ["Category", "wrong value", "wrong count"]
    assert rows == [["simple_python", 1, 0], ["parallel", 1, 1], ["total", 2, 1]]


def test_the_readme_and_ci_install_the_pinned_release_without_its_dependencies():
    root = Path(__file__).parent.parent
    install = f"pip install --no-deps bfcl-eval=={bfclcheck.RELEASE}"
    assert bfclcheck.INSTALL == install
    readme = (root / "README.md").read_text()
    two_commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert len(two_commands) == 2 and all(install in line for line in two_commands)
    ci = (root / ".ci" / "run").read_text().replace(" -q", "")  # CI installs quietly
    assert install in ci
