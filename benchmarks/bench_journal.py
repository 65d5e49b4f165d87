"""Benchmark: journal regeneration time as the ledger grows (target: 10,000 runs in < 2 s).

    just bench-journal
    just bench-journal runs=20000 prompts=30

Builds synthetic ledgers (eval runs x prompts, in three categories, with notes and a few
failed runs) at a quarter, half and all of --runs, and times a full regeneration of each,
plots included (drawn from scratch, as on a fresh checkout), so growth can be judged linear.
The last line is `regenerated N runs in X s`.
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from labbench import cli
from labbench.journal import write_journal
from labbench.ledger import journal_dir, open_ledger

DEFAULT_RUNS = 10_000
DEFAULT_PROMPTS = 30
CATEGORIES = ["tool_calling", "code_generation", "reasoning"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Time journal regeneration on big ledgers.")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--prompts", type=int, default=DEFAULT_PROMPTS)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def fill_ledger(path: Path, runs: int, prompts: int, seed: int) -> None:
    rng = random.Random(seed)
    db = open_ledger(path)
    run_rows, result_rows = [], []
    for run_id in range(1, runs + 1):
        failed = run_id % 97 == 0
        scores = [rng.choice([0.0, 0.5, 1.0]) for _ in range(prompts)]
        overall = sum(scores) / prompts
        run_rows.append(
            {
                "id": run_id,
                "kind": "eval",
                "status": "failed" if failed else "ok",
                "model": "models/tiny",
                "adapter": f"adapters/{run_id - 1}" if run_id % 2 == 0 else None,
                "suite": "baseline" if run_id % 3 else "extra",
                "started_at": f"2026-01-01T00:00:{run_id % 60:02d}.000+00:00",
                "command": json.dumps(["python", "scripts/eval.py", f"seed={run_id}"]),
                "config": "{}",
                "summary": json.dumps(
                    {"overall": overall, "overall_ci_low": overall * 0.8, "overall_ci_high": 1}
                ),
                "error": "the server exited (exit code -9)" if failed else None,
                "fingerprint": f"{run_id % 500:016x}",
                "note": "synthetic" if run_id % 10 == 0 else None,
            }
        )
        for index, score in enumerate(scores):
            result_rows.append(
                {
                    "run_id": run_id,
                    "prompt_id": f"p{index:02d}",
                    "category": CATEGORIES[index % len(CATEGORIES)],
                    "score": score,
                    "explanation": "synthetic",
                    "response": "def f(x):\n    return x",
                    "duration_ms": 10.0,
                }
            )
    with db.conn:
        db.table("runs").insert_all(run_rows, batch_size=1000)
        db.table("eval_results").insert_all(result_rows, batch_size=5000)


def time_regeneration(ledger: Path) -> float:
    db = open_ledger(ledger)
    started = time.perf_counter()
    write_journal(db, journal_dir(ledger))
    return time.perf_counter() - started


def main() -> int:
    args = cli.parse_args(build_parser())
    if args.runs < 4 or args.prompts < 1:
        cli.fail("--runs must be at least 4 and --prompts at least 1")
    sizes = [args.runs // 4, args.runs // 2, args.runs]
    timings = []
    with tempfile.TemporaryDirectory(prefix="labbench-bench-journal-") as scratch:
        for size in sizes:
            ledger = Path(scratch) / f"{size}" / "ledger.db"
            print(f"building a ledger of {size} runs x {args.prompts} prompts...", flush=True)
            fill_ledger(ledger, size, args.prompts, args.seed)
            seconds = time_regeneration(ledger)
            timings.append(seconds)
            print(f"  {size} runs: {seconds:.2f} s ({seconds / size * 1000:.3f} ms per run)")
    growth = sizes[-1] / sizes[0]
    print(
        f"growth from {sizes[0]} to {sizes[-1]} runs: {timings[-1] / timings[0]:.2f}x for "
        f"{growth:.0f}x the runs (at most {growth:.0f}x is linear; the first timing also pays "
        "one-time imports such as matplotlib)"
    )
    print(f"regenerated {sizes[-1]} runs in {timings[-1]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
