"""Benchmark LoRA training speed through mlx-lm's Python API: is this model trainable here?

    just bench                                   # the built-in tiny model on dummy data
    just bench model=mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit iters=10 batch=1
    just bench data=data/mine warmup=3 --goal "can the M1 train the 7B?"

Model loading is timed on its own; warm-up iterations (compilation, caches) are excluded; then
sec/iter, tokens/s and peak memory (mlx's own, not the process RSS) over the measured
iterations, checked against mlx-lm's own iterations_per_second, and a verdict.
"""

import argparse
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from labbench import cli
from labbench.blas import reexec_with_openblas
from labbench.errors import UserError

DEFAULT_ITERS = 12  # measured iterations + warm-up
DEFAULT_WARMUP = 2  # first iterations excluded: JIT compilation and allocator warm-up
DEFAULT_BATCH = 4
DUMMY_EXAMPLES = 64  # dummy dataset size when no --data is given
# The reference journal's decision criteria, as (upper bound of sec/iter, verdict).
VERDICTS = [
    (5.0, "proceed: fast iteration (100 iterations in under ~8 minutes)"),
    (30.0, "still usable (100 iterations in ~15-50 minutes)"),
    (60.0, "slow: consider a smaller model"),
    (float("inf"), "pivot to a smaller model"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark LoRA training speed and record it.",
        epilog="Make-style key=value words work too: model=PATH iters=10 batch=1.",
    )
    parser.add_argument("--model", help="model directory or Hugging Face id (default: tiny)")
    parser.add_argument("--data", help="dataset directory (default: generated dummy data)")
    parser.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="total iterations")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="excluded iterations")
    parser.add_argument("--batch", "--batch-size", type=int, default=DEFAULT_BATCH, dest="batch")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--layers", type=int, help="blocks to adapt (default: all)")
    parser.add_argument("--max-seq-length", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    cli.add_run_args(parser)
    return parser


def verdict(sec_per_iter: float) -> str:
    return next(text for bound, text in VERDICTS if sec_per_iter <= bound)


def measure(reports: list[dict], warmup: int) -> dict:
    """Speed over the iterations after warm-up (one report per iteration)."""
    measured = [r for r in reports if r["split"] == "train" and r["iteration"] > warmup]
    if not measured:
        raise UserError("no iterations left to measure: raise --iters above --warmup")
    ours = statistics.mean(r["window_seconds"] for r in measured)
    mlx = statistics.mean(1 / r["iterations_per_second"] for r in measured)
    return {
        "measured_iterations": len(measured),
        "sec_per_iter": ours,
        "mlx_sec_per_iter": mlx,
        "agreement": ours / mlx,
        "tokens_per_second": statistics.mean(r["tokens_per_second"] for r in measured),
        "peak_memory_gb": max(r["peak_memory_gb"] for r in measured),
    }


def main() -> int:
    reexec_with_openblas()
    args = cli.parse_args(build_parser())
    cli.raise_keyboard_interrupt_on_sigterm()
    from labbench.datacheck import require_trainable
    from labbench.dummydata import write_dummy_data
    from labbench.journal import write_journal
    from labbench.ledger import journal_dir, open_ledger, recording_run
    from labbench.server import resolve_model
    from labbench.training import (
        LoraSettings,
        ReportWriter,
        apply_lora,
        load_data,
        load_model,
        seed_everything,
        train_lora,
    )

    try:
        if args.warmup < 0 or args.iters <= args.warmup:
            raise UserError("--iters must be larger than --warmup")
        if args.batch < 1:
            raise UserError("--batch must be at least 1")
        if args.data:
            require_trainable(Path(args.data), need_valid=False)  # bench does not validate
        model_path = resolve_model(args.model)
    except UserError as error:
        cli.fail(str(error))
    settings = LoraSettings(
        iters=args.iters,
        batch_size=args.batch,
        rank=args.rank,
        num_layers=args.layers,
        seed=args.seed,
        max_seq_length=args.max_seq_length,
        steps_per_report=1,  # one report per iteration, so warm-up can be cut exactly
        save_every=args.iters + 1,
    )
    ledger = cli.ledger_path(args.ledger)
    db = open_ledger(ledger)
    exit_code = 1
    try:
        with (
            tempfile.TemporaryDirectory(prefix="labbench-bench-") as scratch,
            recording_run(
                db,
                "bench",
                {**asdict(settings), "warmup": args.warmup, "data": args.data},
                model=model_path,
                dataset=args.data or f"dummy({DUMMY_EXAMPLES})",
                goal=args.goal or "Is LoRA training on this model fast enough here?",
                note=args.note,
            ) as run,
        ):
            data = Path(args.data) if args.data else Path(scratch) / "data"
            if not args.data:
                write_dummy_data(data, DUMMY_EXAMPLES, args.seed)
            print(f"run {run.id}: benchmarking LoRA training of {model_path}", file=sys.stderr)
            loaded = load_model(model_path)
            train_set, _ = load_data(data, loaded.tokenizer, True, need_valid=False)
            seed_everything(settings.seed)
            apply_lora(loaded.model, settings)
            writer = ReportWriter(db, run.id, steps_per_report=1)
            train_lora(
                loaded, train_set, None, settings, Path(scratch) / "adapters.safetensors", writer
            )
            measured = measure(writer.reports, args.warmup)
            result = {
                "load_seconds": loaded.load_seconds,
                "warmup_iterations": args.warmup,
                **measured,
                "verdict": verdict(measured["sec_per_iter"]),
            }
            run.update(summary=result)
        print(format_result(result))
        exit_code = 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        exit_code = 130
    finally:
        write_journal(db, journal_dir(ledger))
    return exit_code


def format_result(result: dict) -> str:
    from tabulate import tabulate

    rows = [
        ["model load", f"{result['load_seconds']:.2f} s"],
        ["warm-up (excluded)", f"{result['warmup_iterations']} iterations"],
        ["measured", f"{result['measured_iterations']} iterations"],
        ["sec/iter", f"{result['sec_per_iter']:.3f}"],
        ["sec/iter (mlx-lm)", f"{result['mlx_sec_per_iter']:.3f}"],
        ["agreement", f"{result['agreement']:.3f}x"],
        ["tokens/s", f"{result['tokens_per_second']:.0f}"],
        ["peak memory", f"{result['peak_memory_gb']:.3f} GB"],
        ["verdict", result["verdict"]],
    ]
    return tabulate(rows, tablefmt="simple")


if __name__ == "__main__":
    sys.exit(main())
