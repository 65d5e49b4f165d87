"""A sweep's results, from the ledger alone: per configuration the mean and sd across seeds (the
`sweep_scores` view) with a t-interval, the best configuration, and the verdict against the base
model with seeds as the unit of replication. Shown in the terminal, the journal and a plot; and
the groups `just compare` accepts (`sweep:12/learning_rate=3e-4`, `runs:4,7,9`).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.formatting import DASH, category_order, category_title, percent, signed_points
from labbench.core.sweepstats import NO_SPREAD, SeedTest, Spread, one_sample_test, spread
from labbench.present import plots
from labbench.record.ledger import scores_of_runs

OVERALL = "(overall)"  # the sweep_scores view's category for the overall score
ALPHA = 0.05
ALIASES = {"lr": "learning_rate", "layers": "num_layers", "batch": "batch_size"}


@dataclass
class Configuration:
    label: str
    points: list[tuple[int, float, int]] = field(default_factory=list)  # (seed, overall, run)
    spreads: dict[str, Spread] = field(default_factory=dict)  # OVERALL and each category


@dataclass
class SweepResult:
    run: dict
    configurations: list[Configuration]
    planned: int  # configurations in the sweep file: the Bonferroni divisor
    base_run: int | None
    base_overall: float | None
    best: Configuration | None
    test: SeedTest | None


def load_result(db: Database, run_id: int) -> SweepResult:
    run = db.table("runs").get(run_id)
    config = json.loads(run["config"] or "{}")
    summary = json.loads(run["summary"] or "{}")
    # Scores through ledger.scores_of_runs, which reads only these runs: the sweep_scores view
    # has the same numbers (tests/test_sweep.py checks), but SQLite would compute it over every
    # eval in the ledger, and the journal reads this after every run.
    trials = list(
        db.query(
            "SELECT label, seed, eval_run_id FROM sweep_trials"
            " WHERE sweep_run_id = ? AND status = 'ok' ORDER BY id",
            [run_id],
        )
    )
    base_run = summary.get("base_eval_run")
    wanted = [trial["eval_run_id"] for trial in trials] + [base_run]
    scores = scores_of_runs(db, [run for run in wanted if run is not None])
    by_label: dict[str, Configuration] = {}
    values: dict[str, dict[str, list[float]]] = {}
    for trial in trials:
        found = scores.get(trial["eval_run_id"])
        if found is None or found["overall"] is None:  # no result, or nothing scored
            continue
        configuration = by_label.setdefault(trial["label"], Configuration(trial["label"]))
        configuration.points.append((trial["seed"], found["overall"], trial["eval_run_id"]))
        by_category = values.setdefault(trial["label"], {OVERALL: []})
        by_category[OVERALL].append(found["overall"])
        for category, score in found["categories"].items():
            if score["score"] is not None:
                by_category.setdefault(category, []).append(score["score"])
    for label, by_category in values.items():
        by_label[label].spreads = {name: spread(v) for name, v in sorted(by_category.items())}
    configurations = list(by_label.values())
    base_overall = scores.get(base_run, {}).get("overall") if base_run is not None else None
    best = max(configurations, key=lambda c: c.spreads[OVERALL].mean, default=None)
    planned = config.get("configurations") or max(1, len(configurations))
    test = None
    if best is not None and base_overall is not None:
        overall = [score for _, score, _ in best.points]
        test = one_sample_test(base_overall, overall, alpha=ALPHA, comparisons=planned)
    return SweepResult(run, configurations, planned, base_run, base_overall, best, test)


def _mean_sd(spread: Spread | None) -> str:
    if spread is None:
        return DASH
    if spread.sd is None:
        return percent(spread.mean)
    return f"{percent(spread.mean)} ± {spread.sd * 100:.1f}"


def _categories(result: SweepResult) -> list[str]:
    found = {c for conf in result.configurations for c in conf.spreads if c != OVERALL}
    return sorted(found, key=category_order)


def table(result: SweepResult) -> tuple[list[list], list[str]]:
    """The sweep table's rows and headers (the journal's and the terminal's)."""
    categories = _categories(result)
    headers = ["Configuration", "Seeds", "Overall mean ± sd", "95% CI across seeds"]
    headers += [f"{category_title(c)} mean ± sd" for c in categories] + ["Δ vs base"]
    rows = []
    for conf in result.configurations:
        overall = conf.spreads[OVERALL]
        ci = DASH if overall.low is None else f"{percent(overall.low)}–{percent(overall.high)}"
        delta = None if result.base_overall is None else overall.mean - result.base_overall
        best = " (best)" if conf is result.best and len(result.configurations) > 1 else ""
        rows.append(
            [conf.label + best, ",".join(str(seed) for seed, _, _ in conf.points)]
            + [_mean_sd(overall), ci]
            + [_mean_sd(conf.spreads.get(c)) for c in categories]
            + [signed_points(delta)]
        )
    return rows, headers


def verdict(result: SweepResult) -> str:
    """The answer to "does the best configuration beat the base model beyond seed noise?"."""
    test, best = result.test, result.best
    if best is None:
        return "no trial finished, so there is nothing to judge yet"
    if test is None:
        return "the base model was not evaluated (the sweep did not finish)"
    name = f"the best configuration ({best.label})" if result.planned > 1 else "the adapters"
    if test.verdict == "too few seeds":
        return (
            f"{name} scored {signed_points(test.diff)} against the base model with one seed:"
            " one seed cannot tell a change from seed noise (use seeds = [0, 1, 2])"
        )
    if test.verdict == NO_SPREAD:
        return (
            f"{name} scored {signed_points(test.diff)} against the base model, the same with"
            f" every one of its {len(best.points)} seeds: no seed noise was measured, so it"
            " cannot be judged against it (more seeds, or a larger suite, can tell)"
        )
    level = 1 - ALPHA / result.planned
    interval = f"{level * 100:.4g}% CI {signed_points(test.low)} to {signed_points(test.high)}"
    if result.planned > 1:
        interval += f", Bonferroni for picking the best of {result.planned} configurations"
    how = f"{signed_points(test.diff)} ({interval}; {test.method}, p = {test.p_value:.3g})"
    outcome = {
        "better": "beats the base model beyond seed noise",
        "worse": "is worse than the base model beyond seed noise",
    }.get(test.verdict, "does not beat the base model beyond seed noise")
    return f"{name} {outcome}: {how}"


def base_line(result: SweepResult) -> str:
    if result.base_run is None:
        return "Base model: not evaluated"
    return f"Base model: {percent(result.base_overall)} overall (eval run #{result.base_run})"


def plot(result: SweepResult, path: Path) -> Path:
    return plots.scores_by_configuration(
        path,
        f"Sweep run {result.run['id']}: overall by configuration",
        [
            {
                "label": conf.label,
                "points": [[seed, score] for seed, score, _ in conf.points],
                "mean": conf.spreads[OVERALL].mean,
                "low": conf.spreads[OVERALL].low,
                "high": conf.spreads[OVERALL].high,
            }
            for conf in result.configurations
        ],
        result.base_overall,
    )


def terminal_report(db: Database, run_id: int) -> str:
    """The sweep table, the base model, the best configuration and the verdict."""
    from labbench.core.formatting import terminal_table

    result = load_result(db, run_id)
    lines = [terminal_table(*table(result)), base_line(result)]
    if result.best is not None and len(result.configurations) > 1:
        lines.append(f"best: {result.best.label}")
    return "\n".join([*lines, f"verdict: {verdict(result)}"])


def latest_sweeps(db: Database) -> list[int]:
    """The newest sweep run of each distinct sweep (a rerun links every finished trial, so it
    shows all an older one did), in run order."""
    newest: dict[str, int] = {}
    for row in db.query("SELECT id, config FROM runs WHERE kind = 'sweep' ORDER BY id"):
        newest[json.loads(row["config"] or "{}").get("fingerprint") or str(row["id"])] = row["id"]
    return sorted(newest.values())


def sweep_sections(db: Database, journal_dir: Path) -> list[str]:
    """The journal's Sweeps section, as markdown lines (none when the ledger has no sweep)."""
    from labbench.core.formatting import markdown_table, relative

    sweeps = latest_sweeps(db)
    if not sweeps:
        return []
    lines = ["## Sweeps", ""]
    for run_id in sweeps:
        result = load_result(db, run_id)
        config = json.loads(result.run["config"] or "{}")
        status = "" if result.run["status"] == "ok" else f" [{result.run['status']}]"
        lines += [f"### Sweep run {run_id}: {config.get('name')} on {result.run['suite']}{status}"]
        lines += ["", base_line(result), ""]
        if result.configurations:
            lines += [markdown_table(*table(result)), ""]
            picture = plot(result, journal_dir / plots.PLOTS_DIR_NAME / f"sweep-{run_id}.png")
            lines += [f"![Sweep run {run_id}]({relative(picture, journal_dir)})", ""]
        if result.best is not None and len(result.configurations) > 1:
            lines += [f"**Best:** {result.best.label}", ""]
        lines += [f"**Verdict:** {verdict(result)}", ""]
    return lines


@dataclass(frozen=True)
class Group:
    label: str
    run_ids: list[int]  # eval runs


def _matches(stored: object, wanted: str) -> bool:
    if isinstance(stored, list):
        stored = ",".join(str(s) for s in stored)
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        try:
            return math.isclose(float(stored), float(wanted), rel_tol=1e-9)
        except ValueError:
            return False
    return str(stored).lower() == wanted.lower()


def resolve_group(db: Database, text: str) -> Group:
    """`runs:4,7,9` or `sweep:ID[/key=value,key=value]` as eval run ids; raises UserError."""
    kind, _, rest = text.partition(":")
    if kind == "runs":
        try:
            ids = [int(part) for part in rest.split(",") if part.strip()]
        except ValueError:
            raise UserError(f"{text}: runs:ID,ID,... takes run ids, e.g. runs:4,7,9") from None
        if not ids:
            raise UserError(f"{text}: no run ids, e.g. runs:4,7,9")
        if len(set(ids)) < len(ids):
            twice = next(run_id for run_id in ids if ids.count(run_id) > 1)
            raise UserError(f"{text}: run {twice} is listed twice; each run counts once")
        return Group(text, ids)
    if kind != "sweep":
        raise UserError(f"{text}: a group is runs:4,7,9 or sweep:ID/key=value")
    sweep_id, _, selector = rest.partition("/")
    if not sweep_id.isdigit():
        raise UserError(f"{text}: sweep:ID/key=value takes a sweep run id, e.g. sweep:12/lr=3e-4")
    wanted = {}
    for pair in filter(None, selector.split(",")):
        key, equals, value = pair.partition("=")
        if not equals:
            raise UserError(f"{text}: {pair!r} is not key=value")
        wanted[ALIASES.get(key.strip(), key.strip())] = value.strip()
    kinds = [row["kind"] for row in db.query("SELECT kind FROM runs WHERE id = ?", [sweep_id])]
    if not kinds:
        raise UserError(f"{text}: no run {sweep_id} in this ledger")
    if kinds != ["sweep"]:
        raise UserError(f"{text}: run {sweep_id} is a {kinds[0]} run, not a sweep")
    rows = list(
        db.query(
            "SELECT label, configuration, eval_run_id FROM sweep_trials"
            " WHERE sweep_run_id = ? AND status = 'ok' ORDER BY id",
            [int(sweep_id)],
        )
    )
    if not rows:
        raise UserError(f"{text}: sweep run {sweep_id} has no finished trials")
    chosen = [
        row
        for row in rows
        if all(
            key in (conf := json.loads(row["configuration"])) and _matches(conf[key], value)
            for key, value in wanted.items()
        )
    ]
    labels = sorted({row["label"] for row in rows})
    if not chosen:
        raise UserError(f"{text}: no finished trial matches; its configurations: {labels}")
    if len({row["label"] for row in chosen}) > 1:
        picked = sorted({row["label"] for row in chosen})
        raise UserError(f"{text}: matches several configurations {picked}; name one")
    return Group(f"{text} ({chosen[0]['label']})", [row["eval_run_id"] for row in chosen])
