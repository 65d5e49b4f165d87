"""How numbers and tables are shown, in the terminal, the journal and the reports alike."""

DASH = "—"
CATEGORY_TITLES = {
    "tool_calling": "Tool Calling",
    "code_generation": "Code Gen",
    "reasoning": "Reasoning",
}


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"


def signed_points(value: float | None) -> str:
    """A change of a score, in percentage points: +12.5 pts."""
    return DASH if value is None else f"{value * 100:+.1f} pts"


def loss(value: float | None) -> str:
    """A training loss; SQLite stores NaN as NULL, and a NaN loss must show, not vanish."""
    return "NaN" if value is None else f"{value:.3f}"


def with_ci(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return DASH
    if low is None or high is None:
        return percent(value)
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
    if scores["ci_low"] is not None:
        overall += f"  (95% CI {percent(scores['ci_low'])} – {percent(scores['ci_high'])})"
    rows = [["overall", overall], ["success rate", percent(scores["success_rate"])]]
    rows += [[f"pass@{k}", percent(value)] for k, value in scores.get("pass_at_k", {}).items()]
    categories = sorted(scores["categories"].items(), key=lambda item: category_order(item[0]))
    rows += [[category, percent(score)] for category, score in categories]
    return terminal_table(rows, ["", "score"])
