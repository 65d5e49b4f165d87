"""How fast LoRA training runs here, recorded like any run: load time apart, the untimed first
iterations (compilation, caches) left out, then sec/iter, tokens/s and peak memory (mlx's own
figure, not the process RSS) over the measured iterations, checked against mlx-lm's own timing,
and a verdict.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.core.cli import LEDGER_ENV
from labbench.core.errors import UserError
from labbench.core.settings import BenchSettings, LoraSettings
from labbench.record.ledger import recording_run

# The reference journal's decision criteria, as (upper bound of sec/iter, verdict).
VERDICTS = [
    (5.0, "proceed: fast iteration"),
    (30.0, "still usable"),
    (60.0, "slow: consider a smaller model"),
    (float("inf"), "pivot to a smaller model"),
]


@dataclass(frozen=True)
class BenchPlan:
    model: str  # resolved: a directory or a hub id
    data: Path | None  # None: a generated dummy dataset
    settings: BenchSettings
    num_layers: int | None = None
    goal: str | None = None
    note: str | None = None
    launch: Any = None  # a distributed.Launch: also time N ranks on the same global batch
    memory_plan: Any = None  # a memorycheck.MemoryPlan, made before anything was loaded
    memory_ceiling: float | None = None  # bytes: the watchdog stops training above it


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def verdict(sec_per_iter: float) -> str:
    """The decision, with the estimate in the user's terms: `... (100 iterations ≈ 43 s)`."""
    label = next(text for bound, text in VERDICTS if sec_per_iter <= bound)
    return f"{label} (100 iterations ≈ {duration(100 * sec_per_iter)})"


def measure(reports: list[dict], untimed: int) -> dict:
    """Speed over the iterations after the untimed ones (one report per iteration)."""
    measured = [r for r in reports if r["split"] == "train" and r["iteration"] > untimed]
    if not measured:
        raise UserError("no iterations left to measure: raise --iters above --untimed-iters")
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


def bench_ranks(plan: "BenchPlan", lora: LoraSettings, data: Path, scratch: Path) -> dict:
    """The same training on plan.launch's ranks (same global batch), timed like one process."""
    from labbench.train.distributed import train_on_ranks

    status = train_on_ranks(plan.launch, plan.model, data, lora, scratch / "ranks")
    return measure(status["reports"], plan.settings.untimed_iters)


def scaling(single: dict, ranks: dict, launch: Any) -> dict:
    speedup = single["sec_per_iter"] / ranks["sec_per_iter"]
    hosts = sorted(set(launch.hosts))
    local = hosts == ["127.0.0.1"]
    where = (
        f"{launch.world_size} ranks on this one machine ({os.cpu_count()} cores shared): "
        "says nothing about several Macs"
        if local
        else f"{launch.world_size} ranks on {', '.join(hosts)}"
    )
    return {
        **launch.config(),
        "sec_per_iter": ranks["sec_per_iter"],
        "speedup": speedup,
        "efficiency": speedup / launch.world_size,
        "where": where,
    }


def bench_lora(bench: BenchSettings, num_layers: int | None) -> LoraSettings:
    """The training a benchmark times (and the memory plan predicts)."""
    return LoraSettings(
        iters=bench.iters,
        batch_size=bench.batch_size,
        rank=bench.rank,
        num_layers=num_layers,
        seed=bench.seed,
        max_seq_length=bench.max_seq_length,
        steps_per_report=1,  # one report per iteration, so the untimed ones are cut exactly
        save_every=bench.iters + 1,
        grad_checkpoint=bench.grad_checkpoint,
    )


def record_bench(db: Database, plan: BenchPlan) -> dict:
    """One benchmark as a ledger run (kind `bench`); returns its result (runs.summary)."""
    from labbench.data.dummydata import write_dummy_data
    from labbench.train.lora import prepare_training, train_lora
    from labbench.train.memory.watch import MemoryWatch, mlx_peak_gb, record_peaks
    from labbench.train.trainreports import ReportWriter

    bench = plan.settings
    lora = bench_lora(bench, plan.num_layers)
    config = {
        **asdict(lora),
        "untimed_iters": bench.untimed_iters,
        "data": plan.data and str(plan.data),
    }
    if plan.memory_plan:
        config["memory_plan"] = plan.memory_plan.record()
    with (
        tempfile.TemporaryDirectory(prefix="labbench-bench-") as scratch,
        recording_run(
            db,
            "bench",
            config,
            model=plan.model,
            dataset=str(plan.data) if plan.data else f"dummy({bench.dummy_examples})",
            goal=plan.goal or "Is LoRA training on this model fast enough here?",
            note=plan.note,
        ) as run,
    ):
        data = plan.data or Path(scratch) / "data"
        if plan.data is None:
            write_dummy_data(data, bench.dummy_examples, bench.seed)
        print(f"run {run.id}: benchmarking LoRA training of {plan.model}", file=sys.stderr)
        prepared = prepare_training(plan.model, data, lora, need_valid=False)
        writer = ReportWriter(db, run.id, steps_per_report=1)
        weights = Path(scratch) / "adapters.safetensors"
        watch = MemoryWatch(plan.memory_ceiling) if plan.memory_ceiling else None
        try:
            train_lora(
                prepared.loaded, prepared.train_set, None, lora, weights, writer, None, watch
            )
        finally:
            record_peaks(run, plan.memory_plan, mlx_peak_gb())
        measured = measure(writer.reports, bench.untimed_iters)
        result = {
            "load_seconds": prepared.loaded.load_seconds,
            "untimed_iterations": bench.untimed_iters,
            **measured,
            "verdict": verdict(measured["sec_per_iter"]),
        }
        if plan.launch:
            run.update(config={**config, "distributed": plan.launch.config()})
            ranks = bench_ranks(plan, lora, data, Path(scratch))
            result["distributed"] = scaling(measured, ranks, plan.launch)
        run.update(summary=result)
    return result


def timed_eval(words: list[str], ledger: Path, timeout_s: float) -> float:
    """Run `just eval WORDS` as a user types it, recording into `ledger`; its wall-clock seconds,
    which count everything (start-up, imports, the ledger, the report and the journal). A
    failed eval or a failed request is a UserError: a benchmark of failures measures nothing."""
    just = Path(sys.executable).parent / "just"
    env = {**os.environ, LEDGER_ENV: str(ledger)}
    started = time.perf_counter()
    result = subprocess.run(
        [str(just), "eval", *words],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"just eval exited with code {result.returncode}: {last}")
    db = Database(ledger)
    rows = list(db.query("SELECT error FROM eval_results"))
    db.close()
    failed = [row["error"] for row in rows if row["error"] is not None]
    if failed:
        raise UserError(f"eval: {len(failed)} of {len(rows)} requests failed ({failed[0]})")
    return seconds
