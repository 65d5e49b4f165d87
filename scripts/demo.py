"""The whole loop offline, on the built-in tiny model: proof that the lab detects learning.

    just demo
    just demo seed=1
    just demo --small          # the short variant the tests run
    just demo seeds=3          # seeds 0, 1, 2 (from --seed on): the rise as mean ± sd

Uses the pre-trained tiny model (models/tiny-chat, shipped with the project): a baseline eval,
dummy training data (leakage-checked against the suite), LoRA training, an eval with the
adapter, and the journal. Every step is its own run in the ledger, under one `demo` run.
"""

import argparse
import sys
from dataclasses import replace

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.machine.blas import reexec_with_openblas
from labbench.present import recording

DEFAULT_SUITE = "baseline"
WATCHED_CATEGORY = "tool_calling"  # the skill the dummy data teaches
# Settings from the experiments behind issue 4 (labbench/tiny/pretrain.py says why the base model is
# what it is): rank 16 on all seven linear layers of every block (mlx-lm's default;
# rank 8 did worse), lr 3e-4 with warm-up and cosine decay (1e-3 and 5e-4 stalled), 4,000
# examples (1,500 taught the model to repeat a few paths). Measured tool_calling rise on the
# baseline suite: 800 iterations +0.32 (seed 1); 600 iterations +0.33 / +0.28 (seeds 0 / 1);
# 400 iterations (SMALL) +0.23 / +0.20.
FULL = LoraSettings(
    iters=800,
    batch_size=4,
    learning_rate=3e-4,
    warmup=20,
    rank=16,
    scale=10.0,
    steps_per_report=20,
    steps_per_eval=200,
    val_batches=4,
    save_every=200,
)
EXAMPLES = 4000  # dummy examples (train/valid/test), for both variants
# A quicker run of the same loop (tests/test_demo.py).
SMALL = replace(FULL, iters=400)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the whole loop on the tiny model.")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="suite name or TOML path")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument(
        "--seeds", type=int, default=1, help="run the demo for this many seeds, from --seed on"
    )
    parser.add_argument("--small", action="store_true", help="the short variant (tests)")
    cli.add_run_args(parser)
    return parser


def category_score(scores: dict | None, category: str) -> float | None:
    return (scores or {}).get("categories", {}).get(category)


def run_demo(ledger: recording.Ledger, suite, seed: int, args: argparse.Namespace):
    """One demo run for one seed; returns (baseline run, score) and (adapter run, score) of
    the watched category."""
    from labbench.data.dummydata import write_dummy_data
    from labbench.eval.evaluation import EvalPlan, record_eval
    from labbench.record.ledger import recording_run
    from labbench.tiny.pretrain import ensure_chat_model
    from labbench.train.training import TrainPlan, record_training

    settings = replace(SMALL if args.small else FULL, seed=seed)
    model = str(ensure_chat_model())
    config = {"suite": suite.name, "seed": seed, "small": args.small, "examples": EXAMPLES}
    db = ledger.db
    with recording_run(
        db,
        "demo",
        config,
        model=model,
        suite=suite.name,
        goal=args.goal or "Show, offline, that LoRA training on tool-call data is detected.",
        note=args.note,
    ) as demo:
        print(f"run {demo.id}: demo — 1/4 baseline eval", file=sys.stderr)
        baseline = record_eval(
            db, EvalPlan(suite, model, note="demo: baseline", parent_run_id=demo.id)
        )
        if baseline.error:
            raise UserError(f"baseline eval failed: {baseline.error}")

        print(f"run {demo.id}: demo — 2/4 dummy data", file=sys.stderr)
        data_dir = ledger.path.parent / "data" / f"demo-seed{seed}"
        data = write_dummy_data(data_dir, EXAMPLES, seed, [suite.path])
        leaks = f"{len(data.leaks)} of {data.checked} examples near a suite prompt"
        print(f"leakage check: {leaks}", file=sys.stderr)
        if data.leaks:
            raise UserError(f"the dummy data leaks suite prompts: {data.leaks[0]}")
        demo.update(dataset=f"{data_dir}@{data.fingerprint[:8]}")

        print(f"run {demo.id}: demo — 3/4 LoRA training", file=sys.stderr)
        trained = record_training(
            db,
            TrainPlan(
                model=model,
                data=data_dir,
                data_fingerprint=data.fingerprint,
                settings=settings,
                adapters_root=ledger.adapters_dir,
                note="demo: training",
                parent_run_id=demo.id,
            ),
        )

        print(f"run {demo.id}: demo — 4/4 eval with the adapter", file=sys.stderr)
        after = record_eval(
            db,
            EvalPlan(
                suite,
                model,
                adapter=str(trained.adapter_dir),
                note="demo: with the adapter",
                parent_run_id=demo.id,
            ),
        )
        if after.error:
            raise UserError(f"eval with the adapter failed: {after.error}")
        before_score = category_score(baseline.scores, WATCHED_CATEGORY)
        after_score = category_score(after.scores, WATCHED_CATEGORY)
        if before_score is None or after_score is None:
            raise UserError(f"suite {suite.name} has no {WATCHED_CATEGORY} prompts")
        # Which runs the verdict compares; their scores stay in the ledger's views.
        summary = {
            "baseline_run": baseline.run_id,
            "train_run": trained.run_id,
            "adapter_run": after.run_id,
            "category": WATCHED_CATEGORY,
        }
        demo.update(summary=summary)
    return (baseline.run_id, before_score), (after.run_id, after_score)


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    from labbench.core.formatting import percent, signed_points
    from labbench.eval.suite import load_suite

    suite = load_suite(args.suite)
    rises = []
    with recording.recording_ledger(args.ledger) as ledger:
        for seed in range(args.seed, args.seed + args.seeds):
            before, after = run_demo(ledger, suite, seed, args)
            print(
                f"{WATCHED_CATEGORY}: {percent(before[1])} (run {before[0]}) -> "
                f"{percent(after[1])} (run {after[0]}), {signed_points(after[1] - before[1])}"
                + (f" (seed {seed})" if args.seeds > 1 else "")
            )
            rises.append(after[1] - before[1])
    if len(rises) > 1:
        from statistics import mean, stdev

        print(
            f"{WATCHED_CATEGORY} rise over {len(rises)} seeds:"
            f" {mean(rises) * 100:+.1f} ± {stdev(rises) * 100:.1f} pts (mean ± sd)"
        )
    return 0


if __name__ == "__main__":
    reexec_with_openblas()
    cli.run(main)
