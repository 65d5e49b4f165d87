"""Matplotlib pictures for the journal: scores by step, training loss curves.

A picture is redrawn only when the data it shows changed (a hash of the data sits beside
it), so regenerating the journal stays fast as the ledger grows. matplotlib is imported only
when something has to be drawn.
"""

import hashlib
import json
from pathlib import Path

from labbench.atomicfile import replace_atomically

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


def scores_by_step(path: Path, suite: str, steps: list[dict], categories: list[str]) -> Path:
    """Overall (with its 95 % CI) and per-category score for each finished eval of a suite.

    `steps`: dicts with run_id, overall, ci_low, ci_high and a `categories` dict."""
    same, digest = _unchanged(path, [suite, steps, categories])
    if same:
        return path
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4))
    x = list(range(len(steps)))
    overall = [s["overall"] for s in steps]
    few = len(steps) <= 50  # markers and run labels only while they stay readable
    axes.plot(x, overall, "o-" if few else "-", color="black", label="overall", linewidth=2)
    low = [s["ci_low"] if s["ci_low"] is not None else s["overall"] for s in steps]
    high = [s["ci_high"] if s["ci_high"] is not None else s["overall"] for s in steps]
    axes.fill_between(x, low, high, color="grey", alpha=0.2, label="overall 95% CI")
    for category in categories:
        values = [s["categories"].get(category) for s in steps]
        axes.plot(x, values, ".--" if few else "--", label=category, linewidth=1)
    if len(steps) <= 30:
        axes.set_xticks(x, [f"#{s['run_id']}" for s in steps], rotation=45)
    axes.set_ylim(0, 1)
    axes.set_xlabel("eval run (step)")
    axes.set_ylabel("score")
    axes.set_title(f"Scores by step: suite {suite}")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    _save(figure, path, digest)
    plt.close(figure)
    return path


def loss_curves(path: Path, run_id: int, train: list[tuple], val: list[tuple]) -> Path:
    """Train and validation loss by iteration for one training run."""
    same, digest = _unchanged(path, [run_id, train, val])
    if same:
        return path
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4))
    # A NaN loss is stored as NULL: plot it as the gap it is.
    train = [(i, float("nan") if v is None else v) for i, v in train]
    val = [(i, float("nan") if v is None else v) for i, v in val]
    if train:
        axes.plot(*zip(*train, strict=True), "-" if len(train) > 1 else "o", label="train loss")
    if val:
        axes.plot(*zip(*val, strict=True), "o-", label="validation loss")
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss")
    axes.set_title(f"Training loss: run {run_id}")
    axes.legend()
    figure.tight_layout()
    _save(figure, path, digest)
    plt.close(figure)
    return path


def scores_by_configuration(
    path: Path, title: str, configurations: list[dict], base: float | None
) -> Path:
    """A sweep: every seed's overall score per configuration (points), the mean across seeds
    with its 95 % t-interval (bar), and the base model's score (dashed line).

    `configurations`: dicts with label, points [[seed, score], ...], mean, low, high."""
    same, digest = _unchanged(path, [title, configurations, base])
    if same:
        return path
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
    axes.set_ylim(0, 1)
    axes.set_ylabel("overall score")
    axes.set_title(title)
    figure.tight_layout()
    _save(figure, path, digest)
    plt.close(figure)
    return path
