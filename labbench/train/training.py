"""A LoRA training as a ledger run: `running` first, a row per report, its checkpoints, and
each checkpoint's eval through a real server, the best by score kept. SFT trains in this
process (labbench/train/lora.py) or on data-parallel ranks (distributed.py); dpo, orpo and grpo
through mlx-lm-lora (labbench/train/preference/).
"""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.record.ledger import Run, recording_run
from labbench.train.lora import prepare_training, train_lora, write_adapter_config
from labbench.train.memory import watch as memory
from labbench.train.preference.trainer import train_preference
from labbench.train.trainercheck import check_reached
from labbench.train.trainreports import ReportWriter
from labbench.train.trainstate import (
    ADAPTER_WEIGHTS,
    Checkpoint,
    collect_checkpoints,
    keep_final_adapter,
)


@dataclass(frozen=True)
class TrainPlan:
    model: str  # resolved: a directory or a hub id
    data: Path
    data_fingerprint: str
    settings: LoraSettings
    adapters_root: Path  # the adapter goes to adapters_root/<run-id>/
    eval_suite: str | None = None  # evaluate every checkpoint on this suite, keep the best
    eval_max_tokens: int | None = None
    goal: str | None = None
    note: str | None = None
    parent_run_id: int | None = None
    # Settings that must reach the trainer (a sweep's grid values; "data" is the dataset's
    # fingerprint): checked against effective_settings() before the first iteration.
    expect: dict[str, Any] | None = None
    launch: Any = None  # a distributed.Launch: data-parallel ranks through mlx.launch
    memory_plan: Any = None  # a memorycheck.MemoryPlan, made before anything was loaded
    memory_ceiling: float | None = None  # bytes: the watchdog stops training above it
    start_adapter: Path | None = None  # continue this adapter (preference.py: lineage)


@dataclass(frozen=True)
class TrainOutcome:
    run_id: int
    adapter_dir: Path
    summary: dict


def record_training(db: Database, plan: TrainPlan, on_start=None) -> TrainOutcome:
    """One LoRA training as a ledger run: `running` first, a row per report, then finalised.

    Raises UserError (run `failed`) or KeyboardInterrupt (run `interrupted`; the last
    checkpoint in the adapter directory stays usable). `on_start(run_id, adapter_dir)` is
    called once the run exists, so a caller can tell the user where the adapter goes.
    """
    config = {
        **plan.settings.recorded(),
        "data": str(plan.data.resolve()),
        "dataset_fingerprint": plan.data_fingerprint,
        "eval_suite": plan.eval_suite,
        "eval_max_tokens": plan.eval_max_tokens,
        **({"distributed": plan.launch.config()} if plan.launch else {}),
        **({"memory_plan": plan.memory_plan.record()} if plan.memory_plan else {}),
    }
    with recording_run(
        db,
        "train",
        config,
        model=plan.model,
        dataset=f"{plan.data}@{plan.data_fingerprint[:8]}",
        goal=plan.goal,
        note=plan.note,
        parent_run_id=plan.parent_run_id,
    ) as run:
        adapter_dir = plan.adapters_root / str(run.id)
        run.update(adapter=str(adapter_dir))
        if adapter_dir.exists() and any(adapter_dir.iterdir()):
            raise UserError(f"{adapter_dir} already exists (left by another ledger?)")
        if on_start:
            on_start(run.id, adapter_dir)
        summary = train_into(db, run, plan, adapter_dir)
    return TrainOutcome(run.id, adapter_dir, summary)


def train_into(
    db: Database,
    run: Run,
    plan: TrainPlan,
    adapter_dir: Path,
    resume_from: Checkpoint | None = None,
) -> dict[str, Any]:
    """Train (from `resume_from` when given), record the checkpoints, evaluate them if the plan
    says so; returns the run's summary."""
    settings = plan.settings
    load_seconds = None  # nothing left to train: a resumed run that had finished training
    try:
        if settings.method != "sft":  # through mlx-lm-lora, which cannot resume (trainresume)
            load_seconds = train_preference(db, run.id, plan, adapter_dir)
        elif resume_from is None or resume_from.iteration < settings.iters:
            train = _train_distributed if plan.launch else _train_here
            load_seconds = train(db, run.id, plan, adapter_dir, resume_from)
        if settings.iters % settings.save_every:  # else mlx-lm saved it as a checkpoint
            keep_final_adapter(adapter_dir, settings.iters)
    except memory.MemoryCeiling as stop:
        kept = collect_checkpoints(adapter_dir) if adapter_dir.exists() else []
        last = f"iteration {kept[-1][0]}, kept in {kept[-1][1]}" if kept else "none yet"
        raise memory.MemoryCeiling(f"{stop}; last checkpoint: {last}") from None
    finally:
        memory.record_peaks(run, plan.memory_plan, None if plan.launch else memory.mlx_peak_gb())
        checkpoints = collect_checkpoints(adapter_dir) if adapter_dir.exists() else []
        recorded = {
            row["iteration"] for row in db["checkpoints"].rows_where("run_id = ?", [run.id])
        }
        for iteration, path in checkpoints:
            if iteration not in recorded:  # a resumed run recorded its earlier ones
                db.table("checkpoints").insert(
                    {"run_id": run.id, "iteration": iteration, "path": str(path), "best": 0}
                )
    train_losses = [
        row["loss"]
        for row in db.query(
            "SELECT loss FROM train_reports WHERE run_id = ? AND split = 'train' "
            "ORDER BY iteration",
            [run.id],
        )
    ]
    summary: dict[str, Any] = {
        "load_seconds": load_seconds,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "checkpoints": len(checkpoints),
    }
    if plan.eval_suite:
        best = evaluate_checkpoints(db, run, plan, checkpoints)
        if best:
            # The run's adapter is the best checkpoint by eval score, not the last one.
            shutil.copyfile(Path(best["path"]) / ADAPTER_WEIGHTS, adapter_dir / ADAPTER_WEIGHTS)
            summary["best_checkpoint"] = best
    run.update(summary=summary)
    db.table("run_files").insert(
        {"run_id": run.id, "kind": "adapter", "path": str(adapter_dir)}, ignore=True
    )
    return summary


def _train_here(
    db: Database, run_id: int, plan: TrainPlan, adapter_dir: Path, resume_from: Checkpoint | None
) -> float:
    """Train in this process; returns the model's load time."""
    settings = plan.settings
    writer = ReportWriter(db, run_id, settings.steps_per_report)
    prepared = prepare_training(plan.model, plan.data, settings)
    write_adapter_config(adapter_dir, prepared.adapter_config, plan.model)
    train_lora(
        prepared.loaded,
        prepared.train_set,
        prepared.valid_set,
        settings,
        adapter_dir / ADAPTER_WEIGHTS,
        writer,
        before_training=(
            (lambda effective: check_reached(plan.expect, plan.data, effective))
            if plan.expect
            else None
        ),
        watch=memory.MemoryWatch(plan.memory_ceiling) if plan.memory_ceiling else None,
        resume_from=resume_from,
    )
    return prepared.loaded.load_seconds


def _train_distributed(
    db: Database, run_id: int, plan: TrainPlan, adapter_dir: Path, resume_from: Checkpoint | None
) -> float:
    """Train on plan.launch's ranks; rank 0 writes the loss reports into this ledger."""
    from labbench.train.distributed import train_on_ranks

    ledger = next(row["file"] for row in db.query("PRAGMA database_list") if row["name"] == "main")
    status = train_on_ranks(
        plan.launch, plan.model, plan.data, plan.settings, adapter_dir, ledger, run_id, resume_from
    )
    return status["load_seconds"]


def evaluate_checkpoints(
    db: Database, run: Run, plan: TrainPlan, checkpoints: list[tuple[int, Path]]
) -> dict | None:
    """Score each checkpoint on the suite through a real server; keep the best by score."""
    from labbench.core.settings import SamplingSettings
    from labbench.eval.evaluation import EvalPlan, record_eval
    from labbench.eval.suite import load_suite

    suite = load_suite(str(plan.eval_suite))
    scored = []
    for iteration, path in checkpoints:
        eval_plan = EvalPlan(
            suite=suite,
            model=plan.model,
            adapter=str(path),
            sampling=SamplingSettings(max_tokens=plan.eval_max_tokens),
            note=f"checkpoint {iteration} of train run {run.id}",
            parent_run_id=run.id,
        )
        outcome = record_eval(db, eval_plan)
        score = outcome.scores["overall"] if outcome.scores else None
        db.execute(
            "UPDATE checkpoints SET eval_run_id = ?, score = ? WHERE run_id = ? AND iteration = ?",
            [outcome.run_id, score, run.id, iteration],
        )
        if outcome.error or score is None:
            why = outcome.error or "nothing was scored (its tests were not run: exec=false)"
            raise UserError(f"eval of checkpoint {iteration} failed: {why}")
        scored.append((score, -iteration, iteration, path, outcome.run_id))
    if not scored:
        return None
    # Best score; on a tie the earlier checkpoint (fewer iterations, less overfit).
    score, _, iteration, path, eval_run_id = max(scored)
    db.execute(
        "UPDATE checkpoints SET best = 1 WHERE run_id = ? AND iteration = ?", [run.id, iteration]
    )
    return {"iteration": iteration, "path": str(path), "score": score, "eval_run_id": eval_run_id}
