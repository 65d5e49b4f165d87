"""Render one run's HTML report, journal/reports/<run-id>.html, from the ledger alone.

Model output is untrusted (a response may hold `<script>`), so the template is rendered with
autoescape on and nothing in it is marked safe. The same ledger always gives the same bytes:
nothing here reads the clock or the environment, and every query has an explicit order.
Failed and interrupted runs render too, with their error and the results that were kept.
"""

import json
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlite_utils import Database

from labbench.core.atomicfile import write_text_atomically
from labbench.core.errors import UserError
from labbench.core.formatting import (
    DASH,
    category_title,
    collapsed_blank_lines,
    percent,
    sampling_text,
)
from labbench.eval.bfcl.suite import is_bfcl_name
from labbench.present import bfcltables
from labbench.present.entries import EntryData, render_command

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "report.html.j2"


def _environment() -> Environment:
    # autoescape=True rather than select_autoescape(): the name ends in .j2, not .html, and
    # escaping must never depend on a file name.
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,  # a typo in the template fails, never renders blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["percent"] = percent
    environment.filters["category_title"] = category_title
    return environment


def _json_value(text: str | None, default=None):
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return text  # shown as stored rather than hidden


def _pretty_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _duration(ms: float | None) -> str:
    if ms is None:
        return DASH
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms"


def _score_class(score: float | None, error: str | None) -> str:
    if error is None and score is None:
        return "unscored"  # its tests were not run (exec=false): neither passed nor failed
    if error is not None or score is None or score <= 0:
        return "fail"
    return "pass" if score >= 1 else "partial"


def _prompt_row(row: dict) -> dict:
    calls = _json_value(row["tool_calls"])
    return {
        "prompt_id": row["prompt_id"],
        "category": row["category"],
        "score": row["score"],
        "score_text": DASH if row["score"] is None else f"{row['score']:.2f}",
        "score_class": _score_class(row["score"], row["error"]),
        "explanation": row["explanation"] or "",
        "tests_output": row["tests_output"],
        "error": row["error"],
        "response": None if row["response"] is None else collapsed_blank_lines(row["response"]),
        "tool_calls": None if calls is None or calls == [] else _pretty_json(calls),
        "finish_reason": row["finish_reason"] or DASH,
        "duration": _duration(row["duration_ms"]),
        "tokens": (
            f"{row['prompt_tokens']} → {row['completion_tokens']} tokens"
            if row["prompt_tokens"] is not None and row["completion_tokens"] is not None
            else DASH
        ),
    }


def prompt_texts(run: dict, parts: dict | None) -> dict[str, str] | None:
    """Prompt id -> its text (system prompt first): a built-in suite's always, a suite file's
    when it is the file the run used (its hash is in the fingerprint); None when it changed or
    is gone."""
    from labbench.eval.humaneval import HUMANEVAL
    from labbench.eval.suite import load_suite
    from labbench.record.fingerprint import file_sha256

    suite_path = (_json_value(run["config"], {}) or {}).get("suite_path")
    if run["suite"] == HUMANEVAL or is_bfcl_name(run["suite"] or ""):
        suite_path = run["suite"]  # built in: its prompts come with the code, not from a file
    elif not suite_path or not isinstance(parts, dict) or not Path(suite_path).is_file():
        return None
    elif file_sha256(Path(suite_path)) != parts.get("suite"):
        return None
    try:
        suite = load_suite(suite_path)
    except UserError:
        return None
    return {
        p.id: (f"[system] {p.system}\n\n" if p.system else "") + p.prompt for p in suite.prompts
    }


def report_context(db: Database, run_id: int) -> dict:
    """Everything the template shows, read from the ledger (raises UserError for no such run)."""
    runs = list(db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    if not runs:
        raise UserError(f"no run {run_id} in the ledger")
    run = runs[0]
    # Scores as the journal reads them (entries.EntryData: the views' definitions, narrowed to
    # this run, so a report costs the same on a big ledger); they exist for failed runs too.
    data = EntryData(db, [run], {})
    scores = data.summaries.get(run_id, {})
    categories = sorted(data.categories.get(run_id, {}).values(), key=lambda c: c["category"])
    stored = _json_value(run["summary"], {}) or {}
    if not isinstance(stored, dict):
        stored = {}
    low, high = stored.get("overall_ci_low"), stored.get("overall_ci_high")
    results = db.query(
        "SELECT * FROM eval_results WHERE run_id = ? ORDER BY category, prompt_id, id", [run_id]
    )
    parts = _json_value(run["fingerprint_parts"])
    sampling = (_json_value(run["config"], {}) or {}).get("sampling")
    texts = prompt_texts(run, parts) if run["kind"] == "eval" else None
    rows = [_prompt_row(row) for row in results]
    summaries = bfcltables.stored_summaries(run)
    kinds = bfcltables.error_kinds(db, run_id)
    for row in rows:
        row["text"] = None if texts is None else texts.get(row["prompt_id"])
    return {
        "run": run,
        "title": f"Run {run['id']}: {run['kind']} {run['status']}",
        "command": render_command(run) if run["command"] else None,
        "fingerprint_parts": None if parts is None else _pretty_json(parts),
        "stopped": run["status"] in ("failed", "interrupted", "running"),
        "summary": {
            "overall": scores.get("overall"),
            "ci": None if low is None or high is None else (low, high),
            "ci_method": stored.get("overall_ci_method"),
            "success_rate": scores.get("success_rate"),
            "prompts": scores.get("prompts", 0),
            "failures": scores.get("failures") or 0,
        },
        "categories": categories,
        "results": rows,
        "sampling": sampling_text(sampling) if isinstance(sampling, dict) else None,
        "prompt_texts_known": texts is not None,
        "bfcl_summaries": None if summaries is None else bfcltables.summary_rows(summaries),
        "error_kinds": kinds if kinds[1] else None,
    }


def render_report(db: Database, run_id: int) -> str:
    return _environment().get_template(TEMPLATE_NAME).render(report_context(db, run_id))


def write_missing_reports(db: Database, journal_dir: Path) -> None:
    """A report for every finished eval run that has none yet (the journal links them)."""
    missing = db.query(
        "SELECT id FROM runs WHERE kind = 'eval' AND status != 'running' AND id NOT IN "
        "(SELECT run_id FROM run_files WHERE kind = 'report') ORDER BY id"
    )
    for row in list(missing):
        path = write_report(db, row["id"], journal_dir / "reports")
        db.table("run_files").insert(
            {"run_id": row["id"], "kind": "report", "path": str(path)}, ignore=True
        )


def write_report(db: Database, run_id: int, reports_dir: Path) -> Path:
    """Write reports_dir/<run_id>.html atomically (readers never see half a file); its path."""
    html = render_report(db, run_id)
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"{run_id}.html"
    write_text_atomically(path, html)
    return path
