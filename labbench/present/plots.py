"""Matplotlib pictures for the journal: scores by base model, training loss curves.

A picture is redrawn only when the data it shows changed (a hash of the data sits beside
it), so regenerating the journal stays fast as the ledger grows. matplotlib is imported only
when something has to be drawn.
"""

import hashlib
import json
from pathlib import Path

from labbench.core.atomicfile import replace_atomically

PLOTS_DIR_NAME = "plots"


def _unchanged(path: Path, data: object) -> tuple[bool, str]:
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    stamp = path.with_name(f".{path.name}.sha256")
    same = path.exists() and stamp.exists() and stamp.read_text() == digest
    return same, digest


def _save(figure, path: Path, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda tmp: figure.savefig(tmp, dpi=100, metadata={"Software": None}))
    path.with_name(f".{path.name}.sha256").write_text(digest)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


PLOT_RUNS = 200  # the most recent evals of a suite a score plot shows


def lineage_lines(steps: list[dict]) -> list[tuple[int, int]]:
    """The (baseline run, run) pairs a score plot joins: each run to the baseline the
    cumulative_results view gave it (its Δ), when both are shown and scored; nothing else."""
    shown = {s["run_id"]: s for s in steps}
    return [
        (s["baseline_run_id"], s["run_id"])
        for s in steps
        if s["overall"] is not None
        and s["baseline_run_id"] in shown
        and shown[s["baseline_run_id"]]["overall"] is not None
    ]


def scores_by_lineage(path: Path, suite: str, steps: list[dict]) -> Path:
    """Overall score with its 95 % CI for each finished eval of a suite, in run order, and a
    line from each run's baseline (the Δ rule of the cumulative_results view) to the run: one
    colour per base model, adapters as steps from it, unrelated runs never joined.

    `steps`: dicts with run_id, overall, ci_low, ci_high, baseline_run_id, adapter and lineage
    (the label of the base model), in run order; only the last PLOT_RUNS are drawn."""
    shown = steps[-PLOT_RUNS:]
    same, digest = _unchanged(path, [suite, shown])
    if same:
        return path
    plt = _pyplot()
    from matplotlib.collections import LineCollection

    figure, axes = plt.subplots(figsize=(8, 4))
    x = {s["run_id"]: i for i, s in enumerate(shown)}
    y = {s["run_id"]: s["overall"] for s in shown}
    lineages = sorted({s["lineage"] for s in shown})
    colours = {name: f"C{i % 10}" for i, name in enumerate(lineages)}
    lines = lineage_lines(shown)
    by_id = {s["run_id"]: s for s in shown}
    for name in lineages:
        mine = [s for s in shown if s["lineage"] == name and s["overall"] is not None]
        ids = {s["run_id"] for s in mine}
        for adapter_steps, style in ((True, "solid"), (False, "dotted")):
            segments = [
                [(x[a], y[a]), (x[b], y[b])]
                for a, b in lines
                if b in ids and bool(by_id[b]["adapter"]) == adapter_steps
            ]
            axes.add_collection(LineCollection(segments, colors=colours[name], linestyles=style))
        with_ci = [s for s in mine if s["ci_low"] is not None]
        axes.vlines(
            [x[s["run_id"]] for s in with_ci],
            [s["ci_low"] for s in with_ci],
            [s["ci_high"] for s in with_ci],
            colors=colours[name],
            alpha=0.35,
            linewidth=3,
        )
        axes.plot(
            [x[s["run_id"]] for s in mine],
            [s["overall"] for s in mine],
            "o" if len(shown) <= 50 else ".",
            color=colours[name],
            label=name,
        )
    if len(shown) <= 30:
        axes.set_xticks(range(len(shown)), [f"#{s['run_id']}" for s in shown], rotation=45)
    axes.set_xlim(-0.5, max(len(shown) - 0.5, 0.5))
    axes.set_ylim(0, 1)
    axes.set_xlabel("eval run" + (f" (the last {PLOT_RUNS})" if len(steps) > PLOT_RUNS else ""))
    axes.set_ylabel("overall score, 95% CI")
    axes.set_title(f"Suite {suite}: solid, an adapter's Δ from its base; dotted, a rerun's")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    _save(figure, path, digest)
    plt.close(figure)
    return path


def _or_nan(value: float | None) -> float:
    """None (a score with nothing scored, a NaN loss stored as NULL) plots as the gap it is."""
    return float("nan") if value is None else value


def loss_curves(path: Path, run_id: int, train: list[tuple], val: list[tuple]) -> Path:
    """Train and validation loss by iteration for one training run."""
    same, digest = _unchanged(path, [run_id, train, val])
    if same:
        return path
    figure = loss_figure(run_id, train, val)
    _save(figure, path, digest)
    _pyplot().close(figure)
    return path


def loss_figure(run_id: int, train: list[tuple], val: list[tuple]):
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations: no 1.5
    train = [(i, _or_nan(v)) for i, v in train]
    val = [(i, _or_nan(v)) for i, v in val]
    if train:
        axes.plot(*zip(*train, strict=True), "-" if len(train) > 1 else "o", label="train loss")
    if val:
        axes.plot(*zip(*val, strict=True), "o-", label="validation loss")
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss")
    axes.set_title(f"Training loss: run {run_id}")
    axes.legend()
    figure.tight_layout()
    return figure


def scores_by_configuration(
    path: Path, title: str, configurations: list[dict], base: float | None
) -> Path:
    """A sweep: every seed's overall score per configuration (points), the mean across seeds
    with its 95 % t-interval (bar), and the base model's score (dashed line).

    `configurations`: dicts with label, points [[seed, score], ...], mean, low, high."""
    same, digest = _unchanged(path, [title, configurations, base])
    if same:
        return path
    figure = configurations_figure(title, configurations, base)
    _save(figure, path, digest)
    _pyplot().close(figure)
    return path


def configurations_figure(title: str, configurations: list[dict], base: float | None):
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4))
    for x, conf in enumerate(configurations):
        scores = [score for _, score in conf["points"]]
        # Seeds side by side around the configuration, so equal scores stay visible.
        offsets = [(i - (len(scores) - 1) / 2) * 0.06 for i in range(len(scores))]
        first = x == 0
        axes.scatter(
            [x + o for o in offsets],
            scores,
            color="tab:blue",
            alpha=0.7,
            zorder=3,
            label="one seed" if first else None,
        )
        low, high = conf["low"], conf["high"]
        axes.errorbar(
            x + 0.25,
            conf["mean"],
            yerr=None if low is None else [[conf["mean"] - low], [high - conf["mean"]]],
            fmt="s",
            color="black",
            capsize=4,
            label="mean, 95% CI across seeds" if first else None,
        )
    if base is not None:
        axes.axhline(base, color="tab:red", linestyle="--", label="base model")
    axes.legend(loc="best", fontsize="small")
    axes.set_xticks(
        range(len(configurations)), [c["label"] for c in configurations], rotation=20, ha="right"
    )
    # Each configuration in a slot of its own, so that with one the mean is not at the edge.
    axes.set_xlim(-0.5, len(configurations) - 0.5)
    axes.set_ylim(0, 1)
    axes.set_ylabel("overall score")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def metric_curves(path: Path, title: str, curves: dict[str, list[tuple]]) -> Path:
    """Named series by iteration, one line each (a preference run's margins, rewards...)."""
    same, digest = _unchanged(path, [title, curves])
    if same:
        return path
    figure = metric_figure(title, curves)
    _save(figure, path, digest)
    _pyplot().close(figure)
    return path


def metric_figure(title: str, curves: dict[str, list[tuple]]):
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for label, series in curves.items():
        points = [(i, _or_nan(v)) for i, v in series]
        axes.plot(*zip(*points, strict=True), "o-" if len(points) < 20 else "-", label=label)
    axes.set_xlabel("iteration")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    return figure
