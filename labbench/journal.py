"""Render journal/JOURNAL.md from the ledger alone, in the shape of the reference journal.

The same ledger always gives the same bytes: nothing here reads the clock or the environment,
and every query has an explicit order. The Cumulative Results table is rendered from the
ledger's `cumulative_results` view, so the ledger and the journal cannot disagree.
"""

import json
import os
import re
import shlex
from collections import defaultdict
from pathlib import Path

from sqlite_utils import Database

from labbench import plots
from labbench.atomicfile import write_text_atomically
from labbench.formatting import (
    DASH,
    category_order,
    category_title,
    loss,
    markdown_table,
    percent,
    signed_points,
    with_ci,
)
from labbench.hardware import hardware_line

JOURNAL_NAME = "JOURNAL.md"
EXCERPT_CHARS = 300
KIND_TITLES = {"eval": "Eval", "bench": "Benchmark", "train": "Training", "demo": "Demo"}


class LedgerView:
    """Everything the journal shows, read in a few ordered bulk queries."""

    def __init__(self, db: Database):
        self.runs = list(db.query("SELECT * FROM runs ORDER BY id"))
        self.cumulative = list(db.query("SELECT * FROM cumulative_results ORDER BY suite, run_id"))
        self.categories: dict[int, dict[str, dict]] = defaultdict(dict)
        rows = db.query("SELECT * FROM category_scores ORDER BY run_id, category")
        for row in sorted(rows, key=lambda r: (r["run_id"], category_order(r["category"]))):
            self.categories[row["run_id"]][row["category"]] = row
        self.summaries = {r["run_id"]: r for r in db.query("SELECT * FROM eval_summaries")}
        self.notes: dict[int, list[dict]] = defaultdict(list)
        for row in db.query("SELECT * FROM run_notes ORDER BY id"):
            self.notes[row["run_id"]].append(row)
        self.files: dict[int, list[dict]] = defaultdict(list)
        for row in db.query("SELECT * FROM run_files ORDER BY id"):
            self.files[row["run_id"]].append(row)
        self.checkpoints: dict[int, list[dict]] = defaultdict(list)
        for row in db.query("SELECT * FROM checkpoints ORDER BY run_id, iteration"):
            self.checkpoints[row["run_id"]].append(row)
        self.reports: dict[int, list[dict]] = defaultdict(list)
        for row in db.query(
            "SELECT * FROM train_reports WHERE run_id IN "
            "(SELECT id FROM runs WHERE kind IN ('train', 'bench')) ORDER BY run_id, id"
        ):
            self.reports[row["run_id"]].append(row)
        self.first_responses = {
            r["run_id"]: r
            for r in db.query(
                "SELECT run_id, prompt_id, response, error FROM eval_results "
                "WHERE id IN (SELECT MIN(id) FROM eval_results GROUP BY run_id)"
            )
        }
        self.children: dict[int, list[dict]] = defaultdict(list)
        for run in self.runs:
            if run["parent_run_id"] is not None:
                self.children[run["parent_run_id"]].append(run)
        self.nondeterministic = same_fingerprint_different_score(self.cumulative)


def same_fingerprint_different_score(cumulative: list[dict]) -> dict[int, list[int]]:
    """Run id -> the other runs with its fingerprint but a different overall score."""
    by_fingerprint: dict[str, list[dict]] = defaultdict(list)
    for row in cumulative:
        if row["fingerprint"]:
            by_fingerprint[row["fingerprint"]].append(row)
    flagged: dict[int, list[int]] = {}
    for rows in by_fingerprint.values():
        for row in rows:
            others = [
                o["run_id"]
                for o in rows
                if o["run_id"] != row["run_id"] and abs(o["overall"] - row["overall"]) > 1e-9
            ]
            if others:
                flagged[row["run_id"]] = others
    return flagged


def notes_text(view: LedgerView, run: dict, kind: str = "note") -> list[str]:
    texts = [run["note"]] if kind == "note" and run["note"] else []
    if kind == "goal" and run["goal"]:
        texts.append(run["goal"])
    return texts + [n["text"] for n in view.notes.get(run["id"], []) if n["kind"] == kind]


def cumulative_tables(view: LedgerView, journal_dir: Path) -> list[str]:
    """One Cumulative Results table per suite, rows in run order, from the ledger's view."""
    runs = {r["id"]: r for r in view.runs}
    by_suite: dict[str, list[dict]] = defaultdict(list)
    for row in view.cumulative:
        by_suite[row["suite"]].append(row)
    parts = []
    for suite, rows in by_suite.items():
        categories = sorted(
            {c for row in rows for c in view.categories.get(row["run_id"], {})},
            key=category_order,
        )
        headers = ["Step", "Dataset", "Adapter", "Overall (95% CI)", "Δ"]
        headers += [category_title(c) for c in categories] + ["Notes"]
        body = []
        for row in rows:
            scores = view.categories.get(row["run_id"], {})
            notes = [model_name(row["model"])]
            notes += notes_text(view, runs[row["run_id"]])
            if row["run_id"] in view.nondeterministic:
                others = ", ".join(f"#{o}" for o in view.nondeterministic[row["run_id"]])
                notes.append(f"⚠ same fingerprint as {others}, different score")
            body.append(
                [
                    row["step"],
                    row["dataset"] or DASH,
                    short_path(row["adapter"], journal_dir) if row["adapter"] else DASH,
                    with_ci(row["overall"], row["ci_low"], row["ci_high"]),
                    signed_points(row["delta"]),
                ]
                + [percent(scores[c]["score"]) if c in scores else DASH for c in categories]
                + ["; ".join(notes)]
            )
        plot = plots.scores_by_step(
            journal_dir / plots.PLOTS_DIR_NAME / f"scores-{slug(suite)}.png",
            suite,
            [
                {
                    "run_id": r["run_id"],
                    "overall": r["overall"],
                    "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"],
                    "categories": {
                        c: s["score"] for c, s in view.categories.get(r["run_id"], {}).items()
                    },
                }
                for r in rows
            ],
            categories,
        )
        parts += [
            f"### Suite: {suite}",
            "",
            markdown_table(body, headers),
            "",
            f"![Scores by step, suite {suite}]({relative(plot, journal_dir)})",
            "",
        ]
    return parts or ["_No finished evals yet._", ""]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "suite"


def short_path(path: str, journal_dir: Path) -> str:
    """A path relative to the ledger's directory (adapters/7, journal/reports/7.html) when it
    is inside it, else as recorded."""
    base = journal_dir.parent
    if Path(path).is_relative_to(base):
        return Path(path).relative_to(base).as_posix()
    return path


def relative(path: Path | str, journal_dir: Path) -> str:
    return Path(os.path.relpath(path, journal_dir)).as_posix()


def model_name(model: str | None) -> str:
    """A local model by its directory name (tiny), a hub id or a URL as it is."""
    if not model:
        return DASH
    return Path(model).name if model.startswith("/") else model


def render_command(run: dict) -> str:
    try:
        return shlex.join(json.loads(run["command"] or "[]"))
    except (TypeError, ValueError):
        return str(run["command"])


def entry_title(run: dict, journal_dir: Path) -> str:
    kind = KIND_TITLES.get(run["kind"], run["kind"].title())
    what = model_name(run["model"])
    if run["adapter"]:
        what += f" + {short_path(run['adapter'], journal_dir)}"
    if run["suite"]:
        what += f" on {run['suite']}"
    date = (run["started_at"] or "")[:10]
    status = "" if run["status"] == "ok" else f" [{run['status']}]"
    return f"### Run {run['id']}: {kind} — {what} ({date}){status}"


def eval_results(view: LedgerView, run: dict) -> list[str]:
    summary = view.summaries.get(run["id"])
    if not summary:
        return ["**Results:** no prompt was answered.", ""]
    stored = json.loads(run["summary"] or "{}")
    answered = summary["prompts"] - summary["failures"]
    lines = [
        "**Results:**",
        "",
        f"- Overall: {with_ci(summary['overall'], stored.get('overall_ci_low'), stored.get('overall_ci_high'))}",  # noqa: E501
        f"- Success rate: {percent(summary['success_rate'])} "
        f"({answered} of {summary['prompts']} prompts answered)",
        "",
    ]
    rows = [
        [category_title(c), percent(s["score"]), s["prompts"], s["failures"]]
        for c, s in view.categories.get(run["id"], {}).items()
    ]
    lines += [markdown_table(rows, ["Category", "Score", "Prompts", "Failed"]), ""]
    if run["fingerprint"]:
        flag = ""
        if run["id"] in view.nondeterministic:
            others = ", ".join(f"#{o}" for o in view.nondeterministic[run["id"]])
            flag = f" ⚠ runs {others} have the same fingerprint and a different score"
        lines += [f"**Fingerprint:** `{run['fingerprint']}`{flag}", ""]
    return lines


def bench_results(run: dict) -> list[str]:
    from labbench.benchmark import result_rows

    result = json.loads(run["summary"] or "{}")
    if not result:
        return []
    return [
        "**Results:**",
        "",
        markdown_table(result_rows(result), ["Measure", "Value"]),
        "",
        f"**Verdict:** {result['verdict']}",
        "",
    ]


def train_results(view: LedgerView, run: dict, journal_dir: Path) -> list[str]:
    reports = view.reports.get(run["id"], [])
    train = [(r["iteration"], r["loss"]) for r in reports if r["split"] == "train"]
    val = [(r["iteration"], r["loss"]) for r in reports if r["split"] == "val"]
    config = json.loads(run["config"] or "{}")
    shown = {**config, "num_layers": config.get("num_layers") or "all"}
    settings = ", ".join(
        f"{key} {shown[key]}"
        for key in ("iters", "batch_size", "learning_rate", "rank", "scale", "num_layers", "seed")
        if key in config
    )
    lines = [f"**Settings:** {settings}", ""] if settings else []
    if train or val:
        lines += ["**Results:**", ""]
        if train:
            lines.append(f"- Last train loss: {loss(train[-1][1])} at iteration {train[-1][0]}")
        if val:
            lines.append(f"- Last validation loss: {loss(val[-1][1])} at iteration {val[-1][0]}")
        lines.append("")
        plot = plots.loss_curves(
            journal_dir / plots.PLOTS_DIR_NAME / f"loss-run-{run['id']}.png", run["id"], train, val
        )
        lines += [f"![Training loss, run {run['id']}]({relative(plot, journal_dir)})", ""]
    checkpoints = view.checkpoints.get(run["id"], [])
    if checkpoints:
        rows = [
            [
                c["iteration"],
                f"`{short_path(c['path'], journal_dir)}`",
                f"#{c['eval_run_id']}" if c["eval_run_id"] else DASH,
                percent(c["score"]),
                "best" if c["best"] else "",
            ]
            for c in checkpoints
        ]
        lines += [markdown_table(rows, ["Checkpoint", "Path", "Eval run", "Overall", ""]), ""]
    return lines


def demo_results(view: LedgerView, run: dict) -> list[str]:
    evals = [c for c in view.children.get(run["id"], []) if c["kind"] == "eval"]
    rows = []
    for child in evals:
        scores = view.categories.get(child["id"], {})
        summary = view.summaries.get(child["id"], {})
        rows.append(
            [f"#{child['id']}", "adapter" if child["adapter"] else "baseline"]
            + [percent(summary.get("overall"))]
            + [percent(s["score"]) for s in scores.values()]
        )
    if not rows:
        return []
    categories = [category_title(c) for c in view.categories.get(evals[0]["id"], {})]
    lines = ["**Results:**", "", markdown_table(rows, ["Run", "Model", "Overall", *categories]), ""]
    demo = json.loads(run["summary"] or "{}")
    category = demo.get("category")
    before = view.categories.get(demo.get("baseline_run"), {}).get(category)
    after = view.categories.get(demo.get("adapter_run"), {}).get(category)
    if before and after:
        rise = after["score"] - before["score"]
        lines += [
            f"**Verdict:** {category_title(category)} {percent(before['score'])} →"
            f" {percent(after['score'])} ({signed_points(rise)}; the demo aims at +30 pts)",
            "",
        ]
    return lines


def raw_excerpt(view: LedgerView, run: dict) -> list[str]:
    if run["output_excerpt"]:
        text = run["output_excerpt"]
    elif run["kind"] == "eval" and run["id"] in view.first_responses:
        first = view.first_responses[run["id"]]
        body = first["response"] if first["response"] is not None else first["error"] or ""
        text = f"[{first['prompt_id']}] {body[:EXCERPT_CHARS]}"
    elif view.reports.get(run["id"]):
        text = "\n".join(
            f"iter {r['iteration']}: {r['split']} loss {loss(r['loss'])}"
            for r in view.reports[run["id"]][-5:]
        )
    else:
        return []
    return ["**Raw output (excerpt):**", "```text", text.replace("```", "'''"), "```", ""]


def render_entry(view: LedgerView, run: dict, journal_dir: Path) -> str:
    lines = [entry_title(run, journal_dir), ""]
    for goal in notes_text(view, run, "goal"):
        lines += [f"**Goal:** {goal}", ""]
    if run["dataset"]:
        lines += [f"**Dataset:** {run['dataset']}", ""]
    lines += ["**Command:**", "```bash", render_command(run), "```", ""]
    if run["hardware"]:
        lines += [f"**Hardware:** {hardware_line(json.loads(run['hardware']))}", ""]
    if run["kind"] == "eval":
        lines += eval_results(view, run)
    elif run["kind"] == "bench":
        lines += bench_results(run)
    elif run["kind"] == "train":
        lines += train_results(view, run, journal_dir)
    elif run["kind"] == "demo":
        lines += demo_results(view, run)
    if run["status"] in ("failed", "interrupted", "running"):
        lines += [f"**Status:** {run['status']}: {run['error'] or 'not finished'}", ""]
        if run["kind"] == "eval":
            kept = view.summaries.get(run["id"], {}).get("prompts", 0)
            planned = json.loads(run["config"] or "{}").get("prompts_planned")
            of = f" of {planned}" if planned else ""
            lines += [f"**Kept:** {kept}{of} prompt results recorded before the run stopped.", ""]
        if run["kind"] == "train" and run["adapter"]:
            kept = short_path(run["adapter"], journal_dir)
            lines += [f"**Kept:** checkpoints under `{kept}`.", ""]
    files = view.files.get(run["id"], [])
    if files:
        lines += ["**Files:**", ""]
        for f in files:
            target = relative(f["path"], journal_dir)
            lines.append(f"- {f['kind']}: [{short_path(f['path'], journal_dir)}]({target})")
        lines.append("")
    lines += raw_excerpt(view, run)
    for note in notes_text(view, run):
        lines += [f"**Notes:** {note}", ""]
    lines += ["---", ""]
    return "\n".join(lines)


def render_journal(db: Database, journal_dir: Path) -> str:
    from labbench.sweepreport import sweep_sections

    view = LedgerView(db)
    parts = [
        "# Training Experiment Journal",
        "",
        "Generated from the ledger by `just journal` after every run: do not edit by hand.",
        'Add goals and notes with `--goal` / `--note`, or later with `just note RUN "text"`.',
        "",
        "## Cumulative Results",
        "",
        *cumulative_tables(view, journal_dir),
        *sweep_sections(db, journal_dir),
        "## Experiments",
        "",
    ]
    parts += [render_entry(view, run, journal_dir) for run in reversed(view.runs)]
    return "\n".join(parts).rstrip("\n") + "\n"


def write_journal(db: Database, out_dir: Path) -> Path:
    """Regenerate out_dir/JOURNAL.md; written atomically, so readers never see half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / JOURNAL_NAME
    text = render_journal(db, out_dir)
    write_text_atomically(path, text)
    return path
