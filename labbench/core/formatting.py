"""How numbers and tables are shown, in the terminal, the journal and the reports alike."""

import os
import re
from pathlib import Path

DASH = "—"
CATEGORY_TITLES = {
    "tool_calling": "Tool Calling",
    "code_generation": "Code Gen",
    "reasoning": "Reasoning",
}


# A terminal's escape sequences (ECMA-48): CSI (colours, `\x1b[33m`), OSC (titles, links),
# and the short ones (`\x1b(B`, `\x1b7`).
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-~])")


def without_escapes(text: str) -> str:
    """`text` without terminal escape sequences (a launcher's coloured warning, say)."""
    return _ESCAPES.sub("", text)


NEWLINE = "\n"
# More blank lines than a program or prose leaves between paragraphs: written as a count.
_BLANK_RUN = re.compile(r"\n(?:[^\S\n]*\n){3,}")


def collapsed_blank_lines(text: str) -> str:
    """An answer as shown: whitespace only becomes `(312 blank lines)`, and 3 or more blank
    lines inside it one line saying how many, so a model that ran on in newlines does not fill
    the journal or the report with an empty box."""
    if text and not text.strip():
        lines = text.count("\n")
        if lines:
            return f"({lines} blank line{'s' if lines != 1 else ''})"
        return f"({len(text)} whitespace character{'s' if len(text) != 1 else ''})"
    return _BLANK_RUN.sub(_blank_run_count, text)


def _blank_run_count(run: re.Match) -> str:
    return f"\n({run.group().count(NEWLINE) - 1} blank lines)\n"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"


def signed_points(value: float | None) -> str:
    """A change of a score, in percentage points: +12.5 pts."""
    return DASH if value is None else f"{value * 100:+.1f} pts"


def loss(value: float | None) -> str:
    """A training loss; SQLite stores NaN as NULL, and a NaN loss must show, not vanish."""
    return "NaN" if value is None else f"{value:.3f}"


def with_ci(
    value: float | None, low: float | None, high: float | None, method: str | None = None
) -> str:
    """A score with its CI; `method` "n too small" says why there is none."""
    if value is None:
        return DASH
    if low is None or high is None:
        return f"{percent(value)} (n too small)" if method == "n too small" else percent(value)
    return f"{percent(value)} ({percent(low)}–{percent(high)})"


def category_order(category: str) -> tuple[int, str]:
    """The reference journal's order (Tool Calling, Code Gen, Reasoning), then by name."""
    known = list(CATEGORY_TITLES)
    return (known.index(category) if category in known else len(known), category)


def category_title(category: str) -> str:
    return CATEGORY_TITLES.get(category) or category.replace("_", " ").title()


def markdown_table(rows: list[list], headers: list[str]) -> str:
    """A GitHub Markdown table, columns padded to their widest cell.

    Written out rather than through tabulate: the journal renders one or two tables per run,
    and tabulate's per-cell type detection made regenerating 10,000 runs ~5x slower.
    """
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def terminal_table(rows: list[list], headers: list[str] | None = None) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers or (), tablefmt="simple", disable_numparse=True)


def scores_table(scores: dict) -> str:
    """An eval run's scores (ledger.run_scores) for the terminal."""
    overall = percent(scores["overall"])
    if scores["overall"] is None:
        overall += "  (nothing was scored: its tests were not run, exec=false)"
    elif scores["ci_low"] is not None:
        overall += f"  (95% CI {percent(scores['ci_low'])} – {percent(scores['ci_high'])})"
    elif scores.get("ci_method") == "n too small":
        overall += "  (too few prompts for a CI)"
    rows = [["overall", overall], ["success rate", percent(scores["success_rate"])]]
    rows += [[f"pass@{k}", percent(value)] for k, value in scores.get("pass_at_k", {}).items()]
    categories = sorted(scores["categories"].items(), key=lambda item: category_order(item[0]))
    rows += [[category, percent(score)] for category, score in categories]
    return terminal_table(rows, ["", "score"])


def short_path(path: str, journal_dir: Path) -> str:
    """A path relative to the ledger's directory (adapters/7, journal/reports/7.html) when it
    is inside it, else as recorded."""
    base = journal_dir.parent
    if Path(path).is_relative_to(base):
        return Path(path).relative_to(base).as_posix()
    return path


def relative(path: Path | str, journal_dir: Path) -> str:
    """A link from the journal directory to `path`."""
    return Path(os.path.relpath(path, journal_dir)).as_posix()


def sampling_text(sampling: dict) -> str:
    """An eval's sampling settings (runs.config["sampling"]) in full."""
    max_tokens = sampling.get("max_tokens")
    seed = sampling.get("seed")
    return (
        f"temperature {sampling.get('temperature') or 0:g}, "
        f"seed {'none' if seed is None else seed}, "
        f"max_tokens {'from the suite' if max_tokens is None else max_tokens}"
    )


def eval_settings_text(config: dict) -> str:
    """The settings that change what an eval's numbers mean (its runs.config), all of them:
    `first 5 of 31 prompts, 3 epochs, temperature 0.8, seed 1, max_tokens 128, 2 servers,
    tests run`. The journal shows the same settings when they are not the defaults."""
    planned = config.get("prompts_planned")
    if config.get("limit") is not None:
        prompts = f"first {config['limit']} of {config.get('suite_prompts') or '?'} prompts"
    else:
        prompts = f"{planned} prompts" if planned is not None else "all prompts"
    epochs = config.get("epochs") or 1
    parts = [prompts, f"{epochs} epoch{'s' if epochs != 1 else ''}"]
    parts.append(sampling_text(config.get("sampling") or {}))
    servers = config.get("replicas") or len((config.get("url") or "").split(",")) or 1
    parts.append(f"{servers} server{'s' if servers != 1 else ''}")
    execution = config.get("execution")
    if execution is not None:
        parts.append("tests run" if execution.get("enabled") else "tests not run (exec=false)")
    return ", ".join(parts)
