"""Benchmark LoRA training speed through mlx-lm's Python API: is this model trainable here?

    just bench                                   # the built-in tiny model on dummy data
    just bench model=mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit iters=10 batch_size=1
    just bench data=data/mine untimed_iters=3 --goal "can the M1 train the 7B?"
    just bench np=2                              # and 2 ranks on the same global batch
    just bench model=DIR plan=only memory=32GB   # the memory plan alone: does it fit a 32 GB Mac?
    just bench method=dpo                        # DPO: ours against mlx-lm-lora's command line
    just bench method=grpo group_size=4          # GRPO, both rewarded by the eval's scorer

Model loading is timed on its own; the first untimed_iters iterations (compilation, caches:
the benchmark's warm-up, not the learning-rate warm-up that `train` calls warmup) are left out;
then sec/iter, tokens/s and peak memory (mlx's own, not the process RSS) over the measured
iterations, checked against mlx-lm's own timing, and a verdict in the user's terms.
Before anything is loaded, the memory plan predicts the peak from the model's config.json and
refuses a run that would not fit (plan=force runs it anyway; plan=only prints the plan and stops).
With --method dpo, orpo or grpo: labbench's s/iter, everything recorded, against mlx-lm-lora's
own command line on the same model, data and settings, the ratio last
(labbench/train/prefbench.py).
"""

import argparse
import tempfile
from pathlib import Path

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.core.settings import BenchSettings, LoraSettings
from labbench.machine.blas import reexec_with_openblas
from labbench.present import recording
from labbench.train.distributed import add_launch_args, launch_of
from labbench.train.memory.check import MemoryOptions, add_memory_args

DEFAULTS = BenchSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark LoRA training speed and record it.",
        epilog="Make-style key=value words work too: model=PATH iters=10 batch_size=1.",
    )
    parser.add_argument("--model", help="model directory or Hugging Face id (default: tiny)")
    parser.add_argument("--data", help="dataset directory (default: generated dummy data)")
    parser.add_argument("--iters", type=int, default=DEFAULTS.iters, help="total iterations")
    parser.add_argument(
        "--untimed-iters",
        type=int,
        default=DEFAULTS.untimed_iters,
        help="first iterations left out of the timing (compilation, caches)",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--rank", type=int, default=DEFAULTS.rank, help="LoRA rank")
    parser.add_argument("--num-layers", type=int, help="blocks to adapt (default: all)")
    parser.add_argument("--max-seq-length", type=int, default=DEFAULTS.max_seq_length)
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    add_memory_args(parser, grad_checkpoint=True)
    parser.add_argument(
        "--method", default="sft", choices=("sft", "dpo", "orpo", "grpo"), help="what is trained"
    )
    parser.add_argument("--group-size", type=int, default=2, help="grpo: completions per prompt")
    parser.add_argument(
        "--max-completion-length", type=int, default=32, help="grpo: tokens per completion"
    )
    add_launch_args(
        parser,
        np_help="also time N data-parallel ranks here (same global batch)",
        hosts_help="also time one rank per host of mlx's JSON hostfile",
    )
    cli.add_run_args(parser)
    cli.add_old_spelling(parser, "--warmup", "--untimed-iters")
    cli.add_old_spelling(parser, "--batch", "--batch-size")
    cli.add_old_spelling(parser, "--layers", "--num-layers")
    return parser


def plan_bench_memory(model, data, settings: BenchSettings, layers, memory: MemoryOptions):
    """The memory plan of the single-process training a bench times, on its data (the dummy
    data it would generate when none is given), before anything is loaded."""
    from labbench.data.dummydata import write_dummy_data
    from labbench.train.benchmark import bench_lora
    from labbench.train.memory.check import check_training_memory

    lora = bench_lora(settings, layers)
    if data is not None:
        return check_training_memory(model, lora, data, memory)
    with tempfile.TemporaryDirectory(prefix="labbench-plan-") as scratch:
        write_dummy_data(Path(scratch), settings.dummy_examples, settings.seed)
        return check_training_memory(model, lora, Path(scratch), memory)


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    from labbench.core.formatting import terminal_table
    from labbench.data.datacheck import require_trainable
    from labbench.present.benchrows import result_rows
    from labbench.serving.server import resolve_model
    from labbench.train.benchmark import BenchPlan, record_bench
    from labbench.train.trainercheck import check_layers

    if args.untimed_iters < 0 or args.iters <= args.untimed_iters:
        raise UserError("--iters must be larger than --untimed-iters")
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    launch = launch_of(args, args.batch_size)
    if args.method != "sft":
        return bench_preference(args)
    data = cli.user_path(args.data) if args.data else None
    if data:
        require_trainable(data, need_valid=False)  # bench trains without validating
    model = resolve_model(args.model)
    check_layers(LoraSettings(num_layers=args.num_layers), model)  # before a run is recorded
    settings = BenchSettings(
        iters=args.iters,
        untimed_iters=args.untimed_iters,
        batch_size=args.batch_size,
        rank=args.rank,
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        grad_checkpoint=args.grad_checkpoint,
    )
    memory = MemoryOptions.from_args(args)
    memory_plan = plan_bench_memory(model, data, settings, args.num_layers, memory)
    if memory.plan == "only":
        return 0
    plan = BenchPlan(
        model=model,
        data=data,
        settings=settings,
        num_layers=args.num_layers,
        goal=args.goal,
        note=args.note,
        launch=launch,
        memory_plan=memory_plan,
        memory_ceiling=memory.watch_ceiling(),
    )
    with recording.recording_ledger(args.ledger) as ledger:
        result = record_bench(ledger.db, plan)
    print(terminal_table(result_rows(result)))
    print(f"verdict: {result['verdict']}")
    return 0


def bench_preference(args: argparse.Namespace) -> int:
    """--method dpo/orpo/grpo: ours against mlx-lm-lora's command line, the ratio last."""
    from labbench.core.settings import LoraSettings
    from labbench.serving.server import resolve_model
    from labbench.train.prefbench import PrefBenchPlan, record_preference_bench

    if args.data or args.np or args.hosts or args.num_layers:
        raise UserError(
            f"--method {args.method}: the bench makes its data; no --data, --np, --layers"
        )
    settings = LoraSettings(
        method=args.method,
        iters=args.iters,
        batch_size=args.batch_size,
        rank=args.rank,
        seed=args.seed,
        max_seq_length=args.max_seq_length,
        steps_per_report=1,
        steps_per_eval=args.iters,
        val_batches=1,
        save_every=args.iters,
        group_size=args.group_size,
        max_completion_length=args.max_completion_length,
    )
    plan = PrefBenchPlan(
        resolve_model(args.model), settings, args.untimed_iters, goal=args.goal, note=args.note
    )
    with recording.recording_ledger(args.ledger) as ledger:
        result = record_preference_bench(ledger.db, ledger.adapters_dir, plan)
    from labbench.core.formatting import terminal_table
    from labbench.present.benchrows import result_rows

    kept = args.iters - args.untimed_iters - 1
    print(f"medians of {kept} iterations, after {args.untimed_iters} warm-up, without the last")
    print(terminal_table(result_rows(result)))
    print(f"verdict: {result['verdict']}")
    print(f"ratio (mlx-lm-lora / labbench, CPU s per token, target >= 0.95): {result['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    reexec_with_openblas()
    cli.run(main)
