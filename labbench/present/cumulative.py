"""The journal's Cumulative Results: one table per suite, rendered from the ledger's
`cumulative_results` view (which also computes Δ and its baseline), and the score plots.

Rows are grouped by suite, then by base model; Δ is against the run the view names.
"""

import json
import re
from collections import defaultdict
from pathlib import Path

from sqlite_utils import Database

from labbench.core.formatting import (
    DASH,
    category_order,
    category_title,
    markdown_table,
    percent,
    relative,
    short_path,
    signed_points,
    with_ci,
)
from labbench.eval.humaneval import HUMANEVAL
from labbench.present import plots
from labbench.record.ledger import id_list

CUMULATIVE_ORDER = "ORDER BY suite, base_model, run_id"
DELTA_HELP = (
    "Δ: an adapter's row against its base model's most recent earlier eval, a base model's row "
    "against the previous identical run (a reproducibility check); both on the same suite, "
    "sampling settings (temperature, max_tokens, seed, epochs), prompts (limit=), test "
    "execution (exec=) and endpoint (our server or url=); a fused model's row against its "
    "base model's. — when there is none."
)


def cumulative_rows(db: Database, run_ids: list[int]) -> list[dict]:
    """The cumulative_results rows of these runs (those that are finished evals)."""
    sql = f"SELECT * FROM cumulative_results WHERE run_id IN {id_list(run_ids)} {CUMULATIVE_ORDER}"
    rows = list(db.query(sql, run_ids))
    other_base = mismatched_bases(db, [row["run_id"] for row in rows])
    return [row | {"trained_on": other_base.get(row["run_id"])} for row in rows]


def mismatched_bases(db: Database, run_ids: list[int]) -> dict[int, str]:
    """Run id -> the model its adapter was trained on, for the evals that ran an adapter on
    another model (allow_other_base=true)."""
    return {
        row["id"]: row["base"]
        for row in db.query(
            "SELECT id, json_extract(config, '$.adapter_base') AS base FROM runs"
            f" WHERE id IN {id_list(run_ids)} AND json_extract(config, '$.base_mismatch')",
            run_ids,
        )
    }


def base_mismatch_text(trained_on: str | None) -> str:
    return f"⚠ trained on {model_name(trained_on)}" if trained_on else ""


def model_name(model: str | None) -> str:
    """A local model by its directory name (tiny), a hub id, served name or URL as it is."""
    if not model:
        return DASH
    return Path(model).name if model.startswith(("/", ".", "~")) else model


def model_label(row: dict) -> str:
    name = model_name(row["model"])
    if row.get("fuse_run_id"):
        bits = f"{row['fused_bits']}-bit" if row["fused_bits"] else "full precision"
        return f"{name} ({bits}, fused by #{row['fuse_run_id']})"
    return f"{name} (url=)" if row["endpoint"] == "url" else name


def adapter_label(row: dict, journal_dir: Path) -> str:
    """The adapter evaluated, or the one a fused model came from (its training run and
    checkpoint)."""
    if row.get("fuse_run_id") and row["fused_adapter"]:
        origin = [f"train #{row['fused_train_run_id']}"] if row["fused_train_run_id"] else []
        if row["fused_checkpoint"] is not None:
            origin.append(f"iteration {row['fused_checkpoint']}")
        where = f" ({', '.join(origin)})" if origin else ""
        return f"fused from {short_path(row['fused_adapter'], journal_dir)}{where}"
    if not row["adapter"]:
        return DASH
    mismatch = base_mismatch_text(row.get("trained_on"))
    return short_path(row["adapter"], journal_dir) + (f" ({mismatch})" if mismatch else "")


def sampling_label(row: dict) -> str:
    """What was run, when not the default: temperature, seed, max_tokens, epochs, a prompt
    limit, tests not executed. Empty for the defaults."""
    parts = []
    if row["temperature"]:
        parts.append(f"T {row['temperature']:g}")
    if row["seed"] is not None:
        parts.append(f"seed {row['seed']}")
    if row["max_tokens"] is not None:
        parts.append(f"max_tokens {row['max_tokens']}")
    if (row.get("epochs") or 1) > 1:
        parts.append(f"{row['epochs']} epochs")
    if row.get("prompt_limit") is not None:
        parts.append(f"first {row['prompt_limit']} prompts")
    if row.get("executed") == 0:
        parts.append("tests not run")
    return ", ".join(parts)


def pass_at_k_text(row: dict) -> str:
    """pass@1, pass@5, ... of a run with repeats (epochs); a dash without."""
    found = json.loads(row.get("pass_at_k") or "{}")
    return ", ".join(f"@{k} {percent(value)}" for k, value in found.items()) or DASH


def overall_header(suite: str) -> str:
    """HumanEval's overall score is its pass@1 (every problem one test, scored 0 or 1; with
    repeats the mean of per-problem pass rates, the unbiased estimator)."""
    return "pass@1 (95% CI)" if suite == HUMANEVAL else "Overall (95% CI)"


def delta_text(row: dict) -> str:
    if row["baseline_run_id"] is None or row["delta"] is None:
        return DASH
    return f"{signed_points(row['delta'])} vs #{row['baseline_run_id']}"


def should_be_identical(row: dict) -> bool:
    """Runs that should score alike when their fingerprints match: greedy decoding, or a
    fixed seed. Sampling at temperature > 0 without a seed varies by design."""
    return not row["temperature"] or row["seed"] is not None


def identical_run_flags(db: Database, rows: list[dict]) -> dict[int, list[int]]:
    """Run id -> [the previous finished eval with its fingerprint, seed and temperature] when
    that run scored differently, for the `rows` that should have been identical
    (should_be_identical)."""
    watched = [r["run_id"] for r in rows if r["fingerprint"] and should_be_identical(r)]
    same = (
        "json_extract(prev.config, '$.sampling.{0}') IS json_extract(row.config, '$.sampling.{0}')"
    )
    pairs = {
        found["id"]: found["previous"]
        for found in db.query(
            "SELECT row.id, (SELECT MAX(prev.id) FROM runs AS prev"
            " WHERE prev.fingerprint = row.fingerprint AND prev.id < row.id"
            " AND prev.kind = 'eval' AND prev.status = 'ok'"
            f" AND {same.format('seed')} AND {same.format('temperature')}) AS previous"
            f" FROM runs AS row WHERE row.id IN {id_list(watched)}",
            watched,
        )
        if found["previous"] is not None
    }
    overall = {r["run_id"]: r["overall"] for r in rows}
    missing = sorted(set(pairs.values()) - set(overall))
    overall |= {r["run_id"]: r["overall"] for r in cumulative_rows(db, missing)}
    return {
        run_id: [other]
        for run_id, other in pairs.items()
        if overall.get(other) is not None
        and overall[run_id] is not None
        and abs(overall[other] - overall[run_id]) > 1e-9
    }


def flag_text(others: list[int]) -> str:
    runs = ", ".join(f"#{o}" for o in others)
    return f"⚠ same fingerprint as {runs}, different score (should have been identical)"


def cumulative_tables(
    rows: list[dict],
    flagged: dict[int, list[int]],
    notes: dict[int, list[str]],
    journal_dir: Path,
    plot: bool = True,
) -> list[str]:
    """One Cumulative Results table per suite, from the view's rows (in CUMULATIVE_ORDER),
    with its score plot. `flagged`: identical_run_flags; `notes`: run id -> its notes."""
    by_suite: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_suite[row["suite"]].append(row)
    parts = []
    for suite, suite_rows in by_suite.items():
        scores = {r["run_id"]: json.loads(r["categories"] or "{}") for r in suite_rows}
        categories = sorted({c for s in scores.values() for c in s}, key=category_order)
        show_sampling = any(sampling_label(r) for r in suite_rows)
        show_pass_at_k = any(r.get("pass_at_k") for r in suite_rows)
        headers = ["Step", "Model", "Adapter", "Dataset"] + (["Sampling"] if show_sampling else [])
        headers += [overall_header(suite), "Δ"] + (["pass@k"] if show_pass_at_k else [])
        headers += [category_title(c) for c in categories] + ["Notes"]
        body = []
        for row in suite_rows:
            row_notes = list(notes.get(row["run_id"], []))
            if row["run_id"] in flagged:
                row_notes.append(flag_text(flagged[row["run_id"]]))
            if row.get("fuse_warning"):
                row_notes.append(f"⚠ {row['fuse_warning']}")
            cells = [
                row["step"],
                model_label(row),
                adapter_label(row, journal_dir),
                row["dataset"] or DASH,
            ]
            cells += [sampling_label(row) or DASH] if show_sampling else []
            cells += [with_ci(row["overall"], row["ci_low"], row["ci_high"], row["ci_method"])]
            cells += [delta_text(row)] + ([pass_at_k_text(row)] if show_pass_at_k else [])
            cells += [percent(scores[row["run_id"]].get(c)) for c in categories]
            body.append([*cells, "; ".join(row_notes) or DASH])
        parts += [f"### Suite: {suite}", "", markdown_table(body, headers), ""]
        if not plot:
            continue
        picture = plots.scores_by_lineage(
            journal_dir / plots.PLOTS_DIR_NAME / f"scores-{slug(suite)}.png",
            suite,
            [
                {
                    key: row[key]
                    for key in (
                        "run_id",
                        "overall",
                        "ci_low",
                        "ci_high",
                        "baseline_run_id",
                        "adapter",
                    )
                }
                | {"lineage": model_label(row)}
                for row in sorted(suite_rows, key=lambda r: r["run_id"])
            ],
        )
        parts += [f"![Scores by lineage, suite {suite}]({relative(picture, journal_dir)})", ""]
    if not parts:
        return ["_No finished evals yet._", ""]
    return [DELTA_HELP, "", *parts]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "suite"
