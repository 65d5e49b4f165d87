"""Benchmark: what recording one more run costs the journal of a big ledger.

    just bench-journal
    just bench-journal runs=20000 prompts=30

Builds a synthetic ledger (eval runs x prompts, in three categories, with notes and a few
failed runs, spread over months), times a full regeneration into an empty directory (archive
files and plots drawn from scratch, as on a fresh checkout), then records one more eval run
and times the regeneration after it, as every recorded run pays it. The last line is their
ratio (target: one more run costs at most 10 % of a full regeneration).
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from labbench.core import cli
from labbench.core.stats import run_summary
from labbench.present.journal import write_journal
from labbench.record.ledger import finish_run, journal_dir, open_ledger, start_run

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
                "started_at": f"{2020 + run_id // 6000}-{run_id // 500 % 12 + 1:02d}-01T00:00:00",
                "command": json.dumps(["python", "scripts/eval.py", f"seed={run_id}"]),
                "config": json.dumps({"sampling": {"temperature": 0.0}}),
                "summary": json.dumps(
                    {
                        "overall_ci_low": overall * 0.8,
                        "overall_ci_high": 1,
                        "overall_ci_method": "x",
                    }
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


def record_one_more(ledger: Path, prompts: int) -> None:
    db = open_ledger(ledger)
    run = start_run(db, "eval", {"sampling": {"temperature": 0.0}}, model="models/tiny")
    run.update(suite="baseline", fingerprint="one-more")
    rows = [
        {
            "prompt_id": f"p{index:02d}",
            "category": CATEGORIES[index % len(CATEGORIES)],
            "score": float(index % 2),
        }
        for index in range(prompts)
    ]
    for row in rows:
        run.add_eval_result(row)
    run.update(summary=run_summary(rows, epochs=1))
    finish_run(run, "ok")


def timed(what) -> float:
    started = time.perf_counter()
    what()
    return time.perf_counter() - started


def main() -> int:
    args = cli.parse_args(build_parser())
    if args.runs < 1 or args.prompts < 1:
        cli.fail("--runs and --prompts must be at least 1")
    with tempfile.TemporaryDirectory(prefix="labbench-bench-journal-") as scratch:
        ledger = Path(scratch) / "ledger.db"
        print(f"building a ledger of {args.runs} runs x {args.prompts} prompts...", flush=True)
        fill_ledger(ledger, args.runs, args.prompts, args.seed)
        db = open_ledger(ledger)
        out = journal_dir(ledger)
        full = timed(lambda: write_journal(db, out))
        print(f"full regeneration ({args.runs} runs, empty journal directory): {full:.2f} s")
        table = timed(lambda: list(db.query("SELECT * FROM cumulative_results")))
        print(f"the whole cumulative_results view (Datasette's table): {table:.2f} s")
        record_one_more(ledger, args.prompts)
        again = timed(lambda: write_journal(db, out))
        print(f"regeneration after one more run: {again:.2f} s")
    print(f"one more run / full regeneration: {again / full:.1%} (target: at most 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
