"""The journal's Cumulative Results: one table per suite, rendered from the ledger's
`cumulative_results` view (which also computes Δ and its baseline), and the score plots.

Rows are grouped by suite, then by base model; Δ is against the run the view names.
"""

import json
import re
from collections import defaultdict
from pathlib import Path

from sqlite_utils import Database

from labbench import plots
from labbench.formatting import (
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

CUMULATIVE_ORDER = "ORDER BY suite, base_model, run_id"
DELTA_HELP = (
    "Δ: an adapter's row against its base model's most recent earlier eval, a base model's row "
    "against the previous identical run (a reproducibility check); both on the same suite, "
    "sampling settings (temperature, max_tokens, seed) and endpoint (our server or url=). "
    "— when there is none."
)


def cumulative_rows(db: Database) -> list[dict]:
    return list(db.query(f"SELECT * FROM cumulative_results {CUMULATIVE_ORDER}"))


def model_name(model: str | None) -> str:
    """A local model by its directory name (tiny), a hub id, served name or URL as it is."""
    if not model:
        return DASH
    return Path(model).name if model.startswith(("/", ".", "~")) else model


def model_label(row: dict) -> str:
    name = model_name(row["model"])
    return f"{name} (url=)" if row["endpoint"] == "url" else name


def sampling_label(row: dict) -> str:
    """Temperature when not 0, and seed and max_tokens when set; empty for the defaults."""
    parts = []
    if row["temperature"]:
        parts.append(f"T {row['temperature']:g}")
    if row["seed"] is not None:
        parts.append(f"seed {row['seed']}")
    if row["max_tokens"] is not None:
        parts.append(f"max_tokens {row['max_tokens']}")
    return ", ".join(parts)


def delta_text(row: dict) -> str:
    if row["baseline_run_id"] is None or row["delta"] is None:
        return DASH
    return f"{signed_points(row['delta'])} vs #{row['baseline_run_id']}"


def should_be_identical(row: dict) -> bool:
    """Runs that should score alike when their fingerprints match: greedy decoding, or a
    fixed seed. Sampling at temperature > 0 without a seed varies by design."""
    return not row["temperature"] or row["seed"] is not None


def same_fingerprint_different_score(cumulative: list[dict]) -> dict[int, list[int]]:
    """Run id -> the other runs with its fingerprint, seed and temperature but a different
    overall score, among runs that should have been identical (should_be_identical)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in cumulative:
        if row["fingerprint"] and row["overall"] is not None and should_be_identical(row):
            groups[(row["fingerprint"], row["seed"], row["temperature"])].append(row)
    flagged: dict[int, list[int]] = {}
    for rows in groups.values():
        for row in rows:
            others = sorted(
                o["run_id"]
                for o in rows
                if o["run_id"] != row["run_id"] and abs(o["overall"] - row["overall"]) > 1e-9
            )
            if others:
                flagged[row["run_id"]] = others
    return flagged


def flag_text(others: list[int]) -> str:
    return "⚠ same fingerprint as " + ", ".join(f"#{o}" for o in others) + ", different score"


def cumulative_tables(
    rows: list[dict], notes: dict[int, list[str]], journal_dir: Path
) -> list[str]:
    """One Cumulative Results table per suite, from the view's rows (in CUMULATIVE_ORDER).
    `notes`: run id -> its notes."""
    flagged = same_fingerprint_different_score(rows)
    by_suite: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_suite[row["suite"]].append(row)
    parts = []
    for suite, suite_rows in by_suite.items():
        scores = {r["run_id"]: json.loads(r["categories"] or "{}") for r in suite_rows}
        categories = sorted({c for s in scores.values() for c in s}, key=category_order)
        show_sampling = any(sampling_label(r) for r in suite_rows)
        headers = ["Step", "Model", "Adapter", "Dataset"] + (["Sampling"] if show_sampling else [])
        headers += ["Overall (95% CI)", "Δ"] + [category_title(c) for c in categories] + ["Notes"]
        body = []
        for row in suite_rows:
            row_notes = list(notes.get(row["run_id"], []))
            if row["run_id"] in flagged:
                row_notes.append(flag_text(flagged[row["run_id"]]))
            cells = [
                row["step"],
                model_label(row),
                short_path(row["adapter"], journal_dir) if row["adapter"] else DASH,
                row["dataset"] or DASH,
            ]
            cells += [sampling_label(row) or DASH] if show_sampling else []
            cells += [with_ci(row["overall"], row["ci_low"], row["ci_high"], row["ci_method"])]
            cells += [delta_text(row)]
            cells += [percent(scores[row["run_id"]].get(c)) for c in categories]
            body.append([*cells, "; ".join(row_notes) or DASH])
        plot = plots.scores_by_lineage(
            journal_dir / plots.PLOTS_DIR_NAME / f"scores-{slug(suite)}.png",
            suite,
            [
                {
                    key: row[key]
                    for key in ("run_id", "overall", "ci_low", "ci_high", "baseline_run_id")
                }
                | {"lineage": model_label(row)}
                for row in sorted(suite_rows, key=lambda r: r["run_id"])
            ],
        )
        parts += [
            f"### Suite: {suite}",
            "",
            markdown_table(body, headers),
            "",
            f"![Scores by lineage, suite {suite}]({relative(plot, journal_dir)})",
            "",
        ]
    if not parts:
        return ["_No finished evals yet._", ""]
    return [DELTA_HELP, "", *parts]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "suite"
