"""The self-check users can trust BFCL's numbers by: BFCL's gold answers, replayed by an
OpenAI-compatible server over real HTTP, through `just eval url=...` (the whole path: request
with BFCL's tools, answer decoded, BFCL's checker, ledger, summaries, journal, report): the
whole non-live suite (1,390 questions, ~15 s a form here) as OpenAI `tool_calls`, as
Hermes/Qwen `<tool_call>` text and as pythonic text. The live suite's 2,251 are checked in
process only (test_bfcl.py, every entry in every form in under a second): the HTTP path is
the same. Every stored verdict is compared with ast_checker's on the calls the ledger says
were decoded."""

import json

import pytest
from helpers import run_main
from sqlite_utils import Database
from test_bfcl import EXPECTED_MISSES, ast_checkers_verdict

from labbench.eval.bfcl import check as bfclcheck
from labbench.eval.bfcl import suite as bfcl
from labbench.eval.suite import load_suite
from labbench.serving.replay import replay_server


@pytest.fixture(scope="module")
def server():
    suite = load_suite("bfcl")
    answers = {form: bfcl.gold_answers(suite, form) for form in bfcl.ANSWER_FORMS}

    def answer(variant: str, request: dict):
        key = bfcl.request_key(request["messages"], request.get("tools", []))
        return answers[variant][key]

    with replay_server(answer, by_request=True) as base_url:
        yield base_url


def stored_rows(db: Database) -> list[dict]:
    return list(db.query("SELECT * FROM eval_results ORDER BY id"))


@pytest.mark.slow("a replay server in a thread; no model")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("form", bfcl.ANSWER_FORMS)
def test_gold_answers_pass_through_the_whole_path(server, form, isolated_ledger):
    suite_name = "bfcl"
    result = run_main("eval", f"url={server}/{form}/v1", f"suite={suite_name}")
    assert result.returncode == 0, result.stderr
    suite = load_suite(suite_name)
    rows = stored_rows(Database(isolated_ledger))
    assert len(rows) == len(suite.prompts)
    assert {row["decoded_as"] for row in rows} == {
        {"tool_calls": "tool_calls", "hermes": "text:hermes", "pythonic": "text:pythonic"}[form],
        "none",  # the irrelevance questions, answered in words
    }
    ids = {p.id for p in suite.prompts}
    misses = {row["prompt_id"] for row in rows if row["score"] != 1.0}
    assert misses == {i for i in EXPECTED_MISSES[form] if i in ids}
    ast_rows = [r for r in rows if r["category"] != "irrelevance"]
    assert 1 - len(misses) / len(ast_rows) >= 0.99
    assert "BFCL summary" in result.stdout and "irrelevance" in result.stdout
    summary = json.loads(
        Database(isolated_ledger).execute("SELECT summary FROM runs").fetchone()[0]
    )
    assert summary["bfcl"]["irrelevance"]["score"] == 1.0
    assert summary["bfcl"]["non-live"]["ci_low"] < summary["bfcl"]["non-live"]["score"]
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    assert "### BFCL" in journal and "**Errors by kind:**" in journal

    # Our stored verdict is ast_checker's on the calls the ledger says were decoded.
    code = bfclcheck.bfcl_code()
    prompts = {p.id: p for p in suite.prompts}
    for row in rows:
        entry = prompts[row["prompt_id"]].bfcl
        assert entry is not None
        decoded = bfclcheck.from_rows(json.loads(row["tool_calls"]), row["decoded_as"])
        if bfclcheck.is_relevance_category(entry.category):
            valid = decoded.calls is None or code.is_empty_output(decoded.calls)
        elif decoded.calls is None:  # BFCL's runner fails it before its checker
            valid = False
            assert row["error_type"] == "ast_decoder:decoder_failed", row["prompt_id"]
        else:
            direct = ast_checkers_verdict(entry, decoded.calls)
            valid = direct["valid"]
            assert row["error_type"] == (None if valid else direct["error_type"]), row["prompt_id"]
        assert (row["score"] == 1.0) == valid, row["prompt_id"]


@pytest.mark.slow("a replay server in a thread; no model")
@pytest.mark.timeout(300)
def test_compare_works_on_bfcl_runs(server, isolated_ledger):
    for form in ("tool_calls", "pythonic"):
        result = run_main("eval", f"url={server}/{form}/v1", "suite=bfcl:simple_java")
        assert result.returncode == 0, result.stderr
    compared = run_main("compare", "1", "2")
    assert compared.returncode == 0, compared.stderr
    assert "simple_java_62" in compared.stdout  # passes as tool_calls, not as pythonic text
