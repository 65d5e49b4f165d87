"""Render journal/JOURNAL.md from the ledger alone, in the shape of the reference journal.

The same ledger always gives the same bytes: nothing here reads the clock, the file system
or the environment, and every query has an explicit order.
"""

import json
import shlex
from pathlib import Path

from sqlite_utils import Database
from tabulate import tabulate

JOURNAL_NAME = "JOURNAL.md"
DASH = "—"
CATEGORY_TITLES = {
    "tool_calling": "Tool Calling",
    "code_generation": "Code Gen",
    "reasoning": "Reasoning",
}


def category_title(category: str) -> str:
    return CATEGORY_TITLES.get(category) or category.replace("_", " ").title()


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"


def load_runs(db: Database) -> list[dict]:
    return list(db.query("SELECT * FROM runs ORDER BY id"))


def load_category_scores(db: Database) -> dict[int, dict[str, dict]]:
    scores: dict[int, dict[str, dict]] = {}
    for row in db.query("SELECT * FROM category_scores ORDER BY run_id, category"):
        scores.setdefault(row["run_id"], {})[row["category"]] = row
    return scores


def load_summaries(db: Database) -> dict[int, dict]:
    return {row["run_id"]: row for row in db.query("SELECT * FROM eval_summaries")}


def step_label(run: dict) -> str:
    return f"#{run['id']} " + ("Trained" if run["adapter"] else "Baseline")


def cumulative_rows(db: Database) -> tuple[list[str], list[list[str]]]:
    """Step | Dataset | Adapter | Overall | one column per category | Notes: finished evals."""
    runs = [r for r in load_runs(db) if r["kind"] == "eval" and r["status"] == "ok"]
    categories = load_category_scores(db)
    summaries = load_summaries(db)
    all_categories: list[str] = []
    for run in runs:
        for category in categories.get(run["id"], {}):
            if category not in all_categories:
                all_categories.append(category)
    headers = ["Step", "Dataset", "Adapter", "Overall"]
    headers += [category_title(c) for c in all_categories] + ["Notes"]
    rows = []
    for run in runs:
        scores = categories.get(run["id"], {})
        summary = summaries.get(run["id"], {})
        notes = [f"{run['model']}", f"suite {run['suite']}"]
        if run["note"]:
            notes.append(run["note"])
        rows.append(
            [step_label(run), run["dataset"] or DASH, run["adapter"] or DASH]
            + [percent(summary.get("overall"))]
            + [percent(scores[c]["score"]) if c in scores else DASH for c in all_categories]
            + ["; ".join(notes)]
        )
    return headers, rows


def render_command(run: dict) -> str:
    try:
        return shlex.join(json.loads(run["command"] or "[]"))
    except (TypeError, ValueError):
        return str(run["command"])


def render_entry(run: dict, scores: dict[str, dict], summary: dict | None) -> str:
    date = (run["started_at"] or "")[:10]
    title = f"### Run {run['id']}: {run['kind']} {run['status']} ({date})"
    lines = [title, ""]
    if run["goal"]:
        lines += [f"**Goal:** {run['goal']}", ""]
    lines += [
        f"**Model:** `{run['model']}`"
        + (f" with adapter `{run['adapter']}`" if run["adapter"] else ""),
        "",
    ]
    if run["suite"]:
        lines += [f"**Suite:** {run['suite']}", ""]
    lines += ["**Command:**", "```bash", render_command(run), "```", ""]
    if summary:
        answered = summary["prompts"] - summary["failures"]
        lines += [
            "**Results:**",
            "",
            f"- Overall: {percent(summary['overall'])}",
            f"- Success rate: {percent(summary['success_rate'])} "
            f"({answered} of {summary['prompts']} prompts answered)",
            "",
        ]
        table = [
            [category_title(c), percent(s["score"]), s["prompts"], s["failures"]]
            for c, s in scores.items()
        ]
        lines += [
            tabulate(table, headers=["Category", "Score", "Prompts", "Failed"], tablefmt="github"),
            "",
        ]
    if run["status"] in ("failed", "interrupted"):
        lines += [f"**Failure:** {run['error'] or run['status']}", ""]
        kept = summary["prompts"] if summary else 0
        if run["kind"] == "eval":
            lines += [f"**Kept:** {kept} results recorded before the run stopped.", ""]
        if run["output_excerpt"]:
            lines += ["**Raw output (last lines):**", "```", run["output_excerpt"], "```", ""]
    if run["note"]:
        lines += [f"**Notes:** {run['note']}", ""]
    lines += ["---", ""]
    return "\n".join(lines)


def render_journal(db: Database) -> str:
    headers, rows = cumulative_rows(db)
    parts = [
        "# Training Experiment Journal",
        "",
        "Generated from the ledger by `just journal`: do not edit by hand.",
        "",
        "## Cumulative Results",
        "",
        tabulate(rows, headers=headers, tablefmt="github") if rows else "_No finished evals yet._",
        "",
        "## Experiments",
        "",
    ]
    categories = load_category_scores(db)
    summaries = load_summaries(db)
    for run in reversed(load_runs(db)):
        parts.append(render_entry(run, categories.get(run["id"], {}), summaries.get(run["id"])))
    return "\n".join(parts).rstrip("\n") + "\n"


def write_journal(db: Database, out_dir: Path) -> Path:
    """Regenerate out_dir/JOURNAL.md; written atomically, so readers never see half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / JOURNAL_NAME
    text = render_journal(db)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
