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
    overall = [_or_nan(s["overall"]) for s in steps]
    few = len(steps) <= 50  # markers and run labels only while they stay readable
    axes.plot(x, overall, "o-" if few else "-", color="black", label="overall", linewidth=2)
    low = [_or_nan(s["ci_low"] if s["ci_low"] is not None else s["overall"]) for s in steps]
    high = [_or_nan(s["ci_high"] if s["ci_high"] is not None else s["overall"]) for s in steps]
    axes.fill_between(x, low, high, color="grey", alpha=0.2, label="overall 95% CI")
    for category in categories:
        values = [_or_nan(s["categories"].get(category)) for s in steps]
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


def _or_nan(value: float | None) -> float:
    """None (a score with nothing scored, a NaN loss stored as NULL) plots as the gap it is."""
    return float("nan") if value is None else value


def loss_curves(path: Path, run_id: int, train: list[tuple], val: list[tuple]) -> Path:
    """Train and validation loss by iteration for one training run."""
    same, digest = _unchanged(path, [run_id, train, val])
    if same:
        return path
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4))
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
    _save(figure, path, digest)
    plt.close(figure)
    return path
