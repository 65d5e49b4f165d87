"""LoRA training speed with OpenBLAS preloaded against mlx-cpu's own reference BLAS (Linux).

    just bench-blas                              # the built-in tiny model, 8 iterations each
    just bench-blas iters=12 warmup=3
    just bench-blas model=models/tiny-chat batch=2

Two `just bench` processes, one after the other, on the same model, the same generated data and
the same iterations: one as labbench runs by default (OpenBLAS when it passed its self-test) and
one with LABBENCH_OPENBLAS=0. Each excludes its own warm-up iterations. Both write to a throwaway
ledger in a temporary directory, never the user's. The BLAS each run used is read back from its
ledger row. The last line is the speed-up: reference s/iter divided by OpenBLAS s/iter.
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

DEFAULT_ITERS = 8  # iterations per process, warm-up included (reference BLAS: ~5 s each)
DEFAULT_WARMUP = 2  # excluded iterations: JIT compilation and allocator warm-up
DEFAULT_BATCH = 4
RUN_TIMEOUT_S = 600  # one process; the reference run of the tiny model takes ~1 minute


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="LoRA s/iter with and without the OpenBLAS preload, in one run.",
        epilog="Make-style key=value words work too: iters=12 warmup=3 model=PATH.",
    )
    parser.add_argument("--model", help="model directory or Hugging Face id (default: tiny)")
    parser.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="iterations, warm-up too")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="excluded iterations")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="batch size")
    return parser


def bench_once(args: argparse.Namespace, env: dict[str, str], ledger: Path) -> dict:
    """One `scripts/bench.py` process; its ledger row (summary and hardware, decoded)."""
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "bench.py")]
    command += ["--iters", str(args.iters), "--warmup", str(args.warmup)]
    command += ["--batch", str(args.batch), "--ledger", str(ledger)]
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
    if args.warmup < 0 or args.iters <= args.warmup:
        cli.fail("--iters must be larger than --warmup")
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
            print(f"measuring {label}: {args.iters} iterations ({args.warmup} warm-up)...")
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
