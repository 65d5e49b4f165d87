"""LoRA training speed with OpenBLAS preloaded against mlx-cpu's own reference BLAS (Linux).

    just bench-blas                              # the built-in tiny model, 8 iterations each
    just bench-blas iters=12 untimed_iters=3
    just bench-blas model=models/tiny-chat batch_size=2

Two `just bench` processes, one after the other, on the same model, the same generated data and
the same iterations: one as labbench runs by default (OpenBLAS when it passed its self-test) and
one with LABBENCH_OPENBLAS=0. Each leaves its own first untimed_iters iterations out of the
timing. Both write to a throwaway ledger in a temporary directory, never the user's. The BLAS
each run used is read back from its ledger row. The last line is the speed-up: reference s/iter
divided by OpenBLAS s/iter.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from labbench import PROJECT_ROOT
from labbench.core import cli
from labbench.machine.blas import OPENBLAS_ENV, REFERENCE_BLAS, resolve_blas

DEFAULT_ITERS = 8  # iterations per process, untimed ones included (reference BLAS: ~5 s each)
DEFAULT_UNTIMED = 2  # left out of the timing: JIT compilation and allocator warm-up
DEFAULT_BATCH = 4
RUN_TIMEOUT_S = 600  # one process; the reference run of the tiny model takes ~1 minute


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="LoRA s/iter with and without the OpenBLAS preload, in one run.",
        epilog="Make-style key=value words work too: iters=12 untimed_iters=3 model=PATH.",
    )
    parser.add_argument("--model", help="model directory or Hugging Face id (default: tiny)")
    parser.add_argument(
        "--iters", type=int, default=DEFAULT_ITERS, help="iterations, the untimed ones too"
    )
    parser.add_argument(
        "--untimed-iters",
        type=int,
        default=DEFAULT_UNTIMED,
        help="first iterations left out of the timing",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="batch size")
    cli.add_old_spelling(parser, "--warmup", "--untimed-iters")
    cli.add_old_spelling(parser, "--batch", "--batch-size")
    return parser


def bench_once(args: argparse.Namespace, env: dict[str, str], ledger: Path) -> dict:
    """One `scripts/bench.py` process; its ledger row (summary and hardware, decoded)."""
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "bench.py")]
    command += ["--iters", str(args.iters), "--untimed-iters", str(args.untimed_iters)]
    command += ["--batch-size", str(args.batch_size), "--ledger", str(ledger)]
    if args.model:
        command += ["--model", args.model]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=PROJECT_ROOT
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        cli.fail(f"the benchmark process failed: {last}")
    from labbench.record.ledger import open_ledger

    db = open_ledger(ledger)
    row = next(db.query("SELECT summary, hardware FROM runs ORDER BY id DESC LIMIT 1"))
    return {"summary": json.loads(row["summary"]), "hardware": json.loads(row["hardware"])}


def main() -> int:
    args = cli.parse_args(build_parser())
    if args.untimed_iters < 0 or args.iters <= args.untimed_iters:
        cli.fail("--iters must be larger than --untimed-iters")
    if not sys.platform.startswith("linux"):
        cli.fail("bench-blas compares BLAS libraries on Linux; macOS uses Metal")
    if os.environ.get(OPENBLAS_ENV, "").strip() == "0":
        cli.fail(f"{OPENBLAS_ENV}=0 turns OpenBLAS off: unset it to compare")
    choice = resolve_blas()
    if choice.warning:
        print(choice.warning, file=sys.stderr)
    with_preload = dict(os.environ)
    reference = dict(os.environ, **{OPENBLAS_ENV: "0"})
    if choice.library:  # the reference process must not inherit a preload from our caller
        kept = [p for p in reference.get("LD_PRELOAD", "").split() if p != str(choice.library)]
        reference["LD_PRELOAD"] = " ".join(kept)
    results = {}
    with tempfile.TemporaryDirectory(prefix="labbench-bench-blas-") as scratch:
        for label, env in (("OpenBLAS", with_preload), ("reference", reference)):
            print(f"measuring {label}: {args.iters} iterations ({args.untimed_iters} untimed)...")
            results[label] = bench_once(args, env, Path(scratch) / "ledger.db")
    print()
    print(f"{'':10} {'BLAS':28} {'s/iter':>8} {'tokens/s':>9}")
    for label, result in results.items():
        summary = result["summary"]
        print(
            f"{label:10} {result['hardware']['blas']:28} {summary['sec_per_iter']:8.3f}"
            f" {summary['tokens_per_second']:9.0f}"
        )
    if results["OpenBLAS"]["hardware"]["blas"] == REFERENCE_BLAS:
        print("note: OpenBLAS was not used (see the warning above), so both runs are the same BLAS")
    speed_up = (
        results["reference"]["summary"]["sec_per_iter"]
        / results["OpenBLAS"]["summary"]["sec_per_iter"]
    )
    print(f"OpenBLAS/reference speed-up: {speed_up:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
