"""The journal's lines for a preference or RL training run (--method dpo, orpo, grpo): the method
and its settings, where it started (lineage), its own numbers and their curves. The loss and
checkpoints are shown as for SFT (labbench/present/entries.py)."""

from pathlib import Path

from labbench.core.formatting import percent, relative
from labbench.present import plots

# The numbers shown per method: (split, name in train_metrics, label).
HEADLINES = {
    "dpo": [("val", "accuracies", "validation accuracy"), ("val", "margins", "validation margin")],
    "orpo": [("val", "accuracies", "validation accuracy"), ("val", "margins", "validation margin")],
    "grpo": [
        ("step", "reward_score", "mean score reward per step"),
        ("step", "reward_format", "mean format reward per step"),
        ("step", "reward_length", "mean length reward per step"),
        ("train", "kl", "KL to the reference"),
    ],
}
SETTINGS = {
    "dpo": ("beta", "loss_type"),
    "orpo": ("beta",),
    "grpo": ("beta", "group_size", "max_completion_length", "temperature", "rewards"),
}


def method_lines(run: dict, config: dict, metrics: list[dict], journal_dir: Path) -> list[str]:
    method = config.get("method", "sft")
    if method not in HEADLINES:
        return []
    shown = {**config, "rewards": _rewards(config)}
    settings = ", ".join(f"{key} {shown[key]}" for key in SETTINGS[method] if key in shown)
    lines = [f"**Method:** {method.upper()} ({settings})", ""]
    if config.get("start_adapter"):
        made_by = config.get("start_run_id")
        origin = f" (train run #{made_by})" if made_by else ""
        lines += [f"**Starts from:** `{config['start_adapter']}`{origin}", ""]
    curves = {}
    for split, name, label in HEADLINES[method]:
        series = [
            (m["iteration"], m["value"])
            for m in metrics
            if (m["split"], m["name"]) == (split, name)
        ]
        if not series:
            continue
        curves[label] = series
        first, last = series[0][1], series[-1][1]
        value = percent if name == "accuracies" else (lambda v: f"{v:.3f}")
        lines.append(
            f"- {label.capitalize()}: {value(first)} -> {value(last)} (iteration {series[-1][0]})"
        )
    if curves:
        plot = plots.metric_curves(
            journal_dir / plots.PLOTS_DIR_NAME / f"{method}-run-{run['id']}.png",
            f"{method.upper()}: run {run['id']}",
            curves,
        )
        lines += [
            "",
            f"![{method.upper()} metrics, run {run['id']}]({relative(plot, journal_dir)})",
            "",
        ]
    return lines


def _rewards(config: dict) -> str:
    names = config.get("rewards") or []
    weights = config.get("reward_weights") or [1.0] * len(names)
    return " + ".join(f"{w:g} x {n}" for n, w in zip(names, weights, strict=False))


def verdict_line(verdict: dict) -> str:
    """`base #2 -> SFT #4: better (+12.3 pts over 31 prompts, mcnemar p = 0.0020)`"""
    a, b = verdict["runs"]
    return (
        f"{verdict['from']} #{a} -> {verdict['to']} #{b}: {verdict['verdict']}"
        f" ({verdict['mean_diff'] * 100:+.1f} pts over {verdict['prompts']} prompts,"
        f" {verdict['test']} {verdict['p']})"
    )


def demo_verdict_lines(summary: dict) -> list[str]:
    """A demo's chain of steps (base -> SFT -> DPO), each judged against the one before."""
    verdicts = summary.get("verdicts") or []
    if not verdicts:
        return []
    return ["**Paired verdicts:**", "", *(f"- {verdict_line(v)}" for v in verdicts), ""]
