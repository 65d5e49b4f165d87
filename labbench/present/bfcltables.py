"""BFCL's tables: the leaderboard's summaries of a run (terminal, journal entry, report), the
error kinds per category, and the journal's BFCL table (one row per BFCL run, a column per
summary and per category), all read from the ledger.
"""

import json

from sqlite_utils import Database

from labbench.core.formatting import DASH, markdown_table, percent, with_ci
from labbench.eval.bfcl.suite import LIVE, NON_LIVE, is_bfcl_name
from labbench.eval.bfcl.summary import error_table
from labbench.record.ledger import id_list

SUMMARY_ORDER = ("non-live", "simple", "live", "irrelevance", "relevance")


def summary_rows(summaries: dict) -> list[list]:
    """[summary, score (95% CI), prompts] in the leaderboard's order."""
    return [
        [name, with_ci(s["score"], s["ci_low"], s["ci_high"]), s["prompts"]]
        for name in SUMMARY_ORDER
        if (s := summaries.get(name))
    ]


def stored_summaries(run: dict) -> dict | None:
    return (json.loads(run["summary"] or "{}") or {}).get("bfcl")


def error_kinds(db: Database, run_id: int) -> tuple[list[str], list[list]]:
    """The error kinds per category of one run (labbench.eval.bfcl.summary.error_table)."""
    rows = db.query(
        "SELECT category, error_kind FROM eval_results WHERE run_id = ? ORDER BY id", [run_id]
    )
    return error_table(list(rows))


def entry_lines(db: Database, run: dict) -> list[str]:
    """A BFCL run's journal-entry part: its summaries and its error kinds per category."""
    summaries = stored_summaries(run)
    if summaries is None:
        return []
    lines = ["**BFCL (the leaderboard's summaries):**", ""]
    rows = summary_rows(summaries)
    if rows:
        lines += [markdown_table(rows, ["Summary", "Score (95% CI)", "Prompts"]), ""]
    else:
        lines += ["No summary: the run lacks a category each one is made of.", ""]
    headers, kinds = error_kinds(db, run["id"])
    if kinds:
        lines += ["**Errors by kind:**", "", markdown_table(kinds, headers), ""]
    return lines


def journal_table(db: Database, run_ids: list[int]) -> list[str]:
    """The journal's BFCL section: every finished BFCL eval among run_ids."""
    runs = [
        run
        for run in db.query(
            f"SELECT * FROM runs WHERE id IN {id_list(run_ids)} AND kind = 'eval' "
            "AND status = 'ok' ORDER BY id",
            run_ids,
        )
        if run["suite"] and is_bfcl_name(run["suite"])
    ]
    if not runs:
        return []
    scores: dict[int, dict[str, float]] = {run["id"]: {} for run in runs}
    for row in db.query(
        f"SELECT run_id, category, score FROM category_scores WHERE run_id IN "
        f"{id_list(list(scores))} ORDER BY run_id, category",
        list(scores),
    ):
        scores[row["run_id"]][row["category"]] = row["score"]
    categories = [c for c in NON_LIVE + LIVE if any(c in s for s in scores.values())]
    headers = ["Run", "Model", "Adapter", "Suite", *SUMMARY_ORDER, *categories]
    body = []
    for run in runs:
        summaries = stored_summaries(run) or {}
        cells = [f"#{run['id']}", run["model"] or DASH, run["adapter"] or DASH, run["suite"]]
        cells += [
            with_ci(s["score"], s["ci_low"], s["ci_high"]) if (s := summaries.get(name)) else DASH
            for name in SUMMARY_ORDER
        ]
        cells += [percent(scores[run["id"]].get(c)) for c in categories]
        body.append(cells)
    explain = (
        "The leaderboard's summaries as BFCL computes them: simple = mean of python, java and"
        " javascript; non-live = mean of simple, multiple, parallel, parallel_multiple; live ="
        " the live AST categories weighted by count; irrelevance and relevance apart. — where"
        " the run lacks a category a summary is made of."
    )
    return ["### BFCL", "", explain, "", markdown_table(body, headers), ""]
