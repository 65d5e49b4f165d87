"""A run's entry in the journal: title, goal, command, hardware, results, files, raw-output
excerpt and notes, rendered from the ledger alone (the same ledger gives the same bytes).

EntryData reads what the entries of the given runs show, in a few ordered bulk queries, so
rendering the newest entries costs the same on a ledger of 10 or 10,000 runs.
"""

import json
import shlex
from collections import defaultdict
from pathlib import Path

from sqlite_utils import Database

from labbench.core.formatting import (
    DASH,
    category_order,
    category_title,
    collapsed_blank_lines,
    loss,
    markdown_table,
    percent,
    relative,
    sampling_text,
    short_path,
    signed_points,
    with_ci,
)
from labbench.machine.hardware import hardware_line
from labbench.present import bfcltables, plots
from labbench.present.benchrows import result_rows
from labbench.present.cumulative import flag_text, model_name
from labbench.present.prefentries import demo_verdict_lines, method_lines
from labbench.record.ledger import id_list, scores_of_runs

EXCERPT_CHARS = 300
KIND_TITLES = {
    "eval": "Eval",
    "bench": "Benchmark",
    "train": "Training",
    "demo": "Demo",
    "fuse": "Fuse",
}


class EntryData:
    """Everything the entries of `runs` show, read for those runs only. `flags`: run id ->
    the identical runs it scored differently from; `late_notes`: False leaves out notes added
    with `just note`, as the archive does, which keeps what the run recorded itself."""

    def __init__(
        self,
        db: Database,
        runs: list[dict],
        flags: dict[int, list[int]],
        late_notes: bool = True,
    ):
        self.db = db
        self.runs = runs
        self.nondeterministic = flags
        ids = [r["id"] for r in runs]

        def rows(sql: str, run_ids: list[int] = ids):
            return db.query(sql.replace("(:ids)", id_list(run_ids)), run_ids)

        self.children: dict[int, list[dict]] = defaultdict(list)
        for row in rows("SELECT * FROM runs WHERE parent_run_id IN (:ids) ORDER BY id"):
            self.children[row["parent_run_id"]].append(row)
        # A demo's entry shows its evals' scores too.
        scored = ids + [c["id"] for children in self.children.values() for c in children]
        self.categories: dict[int, dict[str, dict]] = defaultdict(dict)
        self.summaries: dict[int, dict] = {}
        for run_id, found in scores_of_runs(db, scored).items():
            ordered = sorted(found.pop("categories").items(), key=lambda c: category_order(c[0]))
            self.categories[run_id] = dict(ordered)
            self.summaries[run_id] = found
        self.notes: dict[int, list[dict]] = defaultdict(list)
        if late_notes:
            for row in rows("SELECT * FROM run_notes WHERE run_id IN (:ids) ORDER BY id"):
                self.notes[row["run_id"]].append(row)
        self.files: dict[int, list[dict]] = defaultdict(list)
        for row in rows("SELECT * FROM run_files WHERE run_id IN (:ids) ORDER BY id"):
            self.files[row["run_id"]].append(row)
        self.checkpoints: dict[int, list[dict]] = defaultdict(list)
        for row in rows(
            "SELECT * FROM checkpoints WHERE run_id IN (:ids) ORDER BY run_id, iteration"
        ):
            self.checkpoints[row["run_id"]].append(row)
        self.resumes: dict[int, list[dict]] = defaultdict(list)
        for row in rows("SELECT * FROM run_resumes WHERE run_id IN (:ids) ORDER BY id"):
            self.resumes[row["run_id"]].append(row)
        self.reports: dict[int, list[dict]] = defaultdict(list)
        for row in rows("SELECT * FROM train_reports WHERE run_id IN (:ids) ORDER BY run_id, id"):
            self.reports[row["run_id"]].append(row)
        self.metrics: dict[int, list[dict]] = defaultdict(list)
        for row in rows("SELECT * FROM train_metrics WHERE run_id IN (:ids) ORDER BY run_id, id"):
            self.metrics[row["run_id"]].append(row)
        # The excerpt shows the lowest-scoring prompt, ties broken by prompt id: chosen by the
        # results, never by the order they finished in.
        self.worst_responses: dict[int, dict] = {}
        for row in rows(
            "SELECT run_id, prompt_id, response, error, score FROM eval_results "
            "WHERE run_id IN (:ids) ORDER BY run_id, score IS NULL, score, prompt_id, id"
        ):
            self.worst_responses.setdefault(row["run_id"], row)


def notes_text(view: EntryData, run: dict, kind: str = "note") -> list[str]:
    texts = [run["note"]] if kind == "note" and run["note"] else []
    if kind == "goal" and run["goal"]:
        texts.append(run["goal"])
    return texts + [n["text"] for n in view.notes.get(run["id"], []) if n["kind"] == kind]


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


def eval_results(view: EntryData, run: dict) -> list[str]:
    summary = view.summaries.get(run["id"])
    if not summary:
        return ["**Results:** no prompt was answered.", ""]
    stored = json.loads(run["summary"] or "{}")
    answered = summary["prompts"] - summary["failures"]
    lines = [
        "**Results:**",
        "",
        "- Overall: "
        + with_ci(
            summary["overall"],
            stored.get("overall_ci_low"),
            stored.get("overall_ci_high"),
            stored.get("overall_ci_method"),
        ),
        f"- Success rate: {percent(summary['success_rate'])} "
        f"({answered} of {summary['prompts']} prompts answered)",
    ]
    config = json.loads(run["config"] or "{}")
    if (config.get("epochs") or 1) > 1:
        pass_at_k = ", ".join(
            f"pass@{k} {percent(value)}" for k, value in stored.get("pass_at_k", {}).items()
        )
        lines.append(f"- {config['epochs']} epochs per prompt: {pass_at_k or 'no prompt complete'}")
    lines.append("")
    rows = [
        [category_title(c), percent(s["score"]), s["prompts"], s["failures"]]
        for c, s in view.categories.get(run["id"], {}).items()
    ]
    lines += [markdown_table(rows, ["Category", "Score", "Prompts", "Failed"]), ""]
    if config.get("base_mismatch"):
        lines += [
            f"**⚠ Base model mismatch:** the adapter was trained on"
            f" {model_name(config.get('adapter_base'))}, and evaluated on"
            f" {model_name(run['model'])} as asked (allow_other_base=true).",
            "",
        ]
    lines += bfcltables.entry_lines(view.db, run)
    sampling = config.get("sampling")
    if sampling:
        lines += [f"**Sampling:** {sampling_text(sampling)}", ""]
    if run["fingerprint"]:
        flag = ""
        if run["id"] in view.nondeterministic:
            flag = " " + flag_text(view.nondeterministic[run["id"]])
        lines += [f"**Fingerprint:** `{run['fingerprint']}`{flag}", ""]
    return lines


def bench_results(run: dict) -> list[str]:
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


def train_results(view: EntryData, run: dict, journal_dir: Path) -> list[str]:
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
    lines += method_lines(run, config, view.metrics.get(run["id"], []), journal_dir)
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


def demo_results(view: EntryData, run: dict) -> list[str]:
    evals = [c for c in view.children.get(run["id"], []) if c["kind"] == "eval"]
    demo = json.loads(run["summary"] or "{}")
    steps = {step["run"]: step["name"] for step in demo.get("steps", [])}
    rows = []
    for child in evals:
        scores = view.categories.get(child["id"], {})
        summary = view.summaries.get(child["id"], {})
        model = "adapter" if child["adapter"] else "baseline"
        rows.append(
            [f"#{child['id']}", steps.get(child["id"], model)]
            + [percent(summary.get("overall"))]
            + [percent(s["score"]) for s in scores.values()]
        )
    if not rows:
        return []
    categories = [category_title(c) for c in view.categories.get(evals[0]["id"], {})]
    lines = ["**Results:**", "", markdown_table(rows, ["Run", "Model", "Overall", *categories]), ""]
    lines += demo_verdict_lines(demo)
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


def fuse_results(run: dict, journal_dir: Path) -> list[str]:
    """What was fused from where, its checks, the warning and the verdict (runs.summary)."""
    fuse = json.loads(run["summary"] or "{}")
    if not fuse.get("output"):
        return []
    origin = f"train run #{fuse['train_run_id']}" if fuse.get("train_run_id") else "no train run"
    if fuse.get("checkpoint") is not None:
        origin += f", iteration {fuse['checkpoint']}"
    bits = f"{fuse['bits']}-bit, group size {fuse['group_size']}" if fuse.get("bits") else "full"
    base_bits = f"{fuse['base_bits']}-bit" if fuse.get("base_bits") else "full precision"
    lines = [
        f"**Fused:** `{short_path(fuse['adapter'], journal_dir)}` ({origin}) into"
        f" {model_name(fuse['base_model'])} ({base_bits}, fingerprint"
        f" `{fuse['base_fingerprint']}`{', dequantized' if fuse.get('dequantized') else ''})",
        "",
        f"**Output:** `{short_path(fuse['output'], journal_dir)}` ({bits}"
        f"{' precision' if not fuse.get('bits') else ''}), fingerprint"
        f" `{fuse['output_fingerprint']}`",
        "",
    ]
    if fuse.get("warning"):
        lines += [f"**Warning:** {fuse['warning']}", ""]
    if fuse.get("verdict"):
        evals = ""
        if fuse.get("fused_eval_run_id"):
            evals = (
                f" (eval #{fuse['fused_eval_run_id']} against the adapter's"
                f" #{fuse['adapter_eval_run_id']} on {fuse['verify_suite']})"
            )
        lines += [f"**Verdict:** {fuse['verdict']}{evals}", ""]
    elif run["status"] in ("failed", "interrupted"):
        kept = short_path(fuse["output"], journal_dir)
        lines += [f"**Verdict:** not verified (run {run['status']}); `{kept}` was kept", ""]
    return lines


def raw_excerpt(view: EntryData, run: dict) -> list[str]:
    title = "**Raw output (excerpt):**"
    if run["output_excerpt"]:
        text = run["output_excerpt"]
    elif run["kind"] == "eval" and run["id"] in view.worst_responses:
        worst = view.worst_responses[run["id"]]
        body = worst["response"] if worst["response"] is not None else worst["error"] or ""
        body = collapsed_blank_lines(body)
        score = DASH if worst["score"] is None else f"{worst['score']:g}"
        text = f"[{worst['prompt_id']}, score {score}] {body[:EXCERPT_CHARS]}"
        title = "**Raw output (excerpt: the lowest-scoring prompt, ties by prompt id):**"
    elif view.reports.get(run["id"]):
        text = "\n".join(
            f"iter {r['iteration']}: {r['split']} loss {loss(r['loss'])}"
            for r in view.reports[run["id"]][-5:]
        )
    else:
        return []
    return [title, "```text", text.replace("```", "'''"), "```", ""]


def memory_lines(run: dict) -> list[str]:
    """A training's predicted peak memory beside mlx's measured one, when it has them."""
    predicted, measured = run.get("predicted_peak_gb"), run.get("measured_peak_gb")
    if predicted is None and measured is None:
        return []
    parts = []
    if predicted is not None:
        parts.append(f"predicted peak {predicted:.3f} GB")
    if measured is not None:
        parts.append(f"measured {measured:.3f} GB by mlx")
    if predicted and measured is not None:
        parts[-1] += f" ({measured / predicted - 1:+.0%} against the plan)"
    return [f"**Memory:** {', '.join(parts)}", ""]


def render_entry(view: EntryData, run: dict, journal_dir: Path) -> str:
    lines = [entry_title(run, journal_dir), ""]
    for goal in notes_text(view, run, "goal"):
        lines += [f"**Goal:** {goal}", ""]
    if run["dataset"]:
        lines += [f"**Dataset:** {run['dataset']}", ""]
    lines += ["**Command:**", "```bash", render_command(run), "```", ""]
    if run["hardware"]:
        lines += [f"**Hardware:** {hardware_line(json.loads(run['hardware']))}", ""]
    lines += memory_lines(run)
    if run["kind"] == "eval":
        lines += eval_results(view, run)
    elif run["kind"] == "bench":
        lines += bench_results(run)
    elif run["kind"] == "train":
        lines += train_results(view, run, journal_dir)
    elif run["kind"] == "demo":
        lines += demo_results(view, run)
    elif run["kind"] == "fuse":
        lines += fuse_results(run, journal_dir)
    if run["status"] in ("failed", "interrupted", "running"):
        lines += [f"**Status:** {run['status']}: {run['error'] or 'not finished'}", ""]
        if run["kind"] == "eval":
            kept = view.summaries.get(run["id"], {}).get("prompts", 0)
            planned = json.loads(run["config"] or "{}").get("prompts_planned")
            of = f" of {planned}" if planned else ""
            lines += [
                f"**Kept:** {kept}{of} prompt results recorded before the run stopped;"
                f" `just eval resume={run['id']}` asks the rest.",
                "",
            ]
        if run["kind"] == "train" and run["adapter"]:
            kept = short_path(run["adapter"], journal_dir)
            lines += [
                f"**Kept:** checkpoints under `{kept}`;"
                f" `just train resume={run['id']}` continues from the last one.",
                "",
            ]
    for resume in view.resumes.get(run["id"], []):
        what = "results" if run["kind"] == "eval" else "iterations"
        lines += [
            f"**Resumed:** {resume['resumed_at'][:16].replace('T', ' ')} UTC, after it was"
            f" {resume['previous_status']} with {resume['kept']} {what} kept.",
            "",
        ]
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
