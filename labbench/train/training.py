"""LoRA training through mlx-lm's Python API, with every report streamed into the ledger.

Shared by `scripts/train.py` and `scripts/bench.py`. Numbers come from mlx-lm's
`TrainingCallback` (mlx-lm 0.32 no longer prints it/s or peak memory), never from stdout.
Verified gotchas handled here:
- `mlx_lm.lora.run(args, training_callback=cb)` ignores `cb`, so we call `tuner.train()`.
- `train()` does not write `adapter_config.json`, which the server and fuse need.
- The last report window's `iterations_per_second` assumes a full window; we correct it, and
  `train()` always draws its rich UI, which we replace (both in labbench/train/trainreports.py).
"""

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.record.ledger import Run, recording_run
from labbench.train import memorywatch as memory
from labbench.train import preference  # which imports this module
from labbench.train.trainercheck import check_reached, effective_settings, too_many_layers
from labbench.train.trainreports import QuietUI, ReportWriter
from labbench.train.trainstate import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    Checkpoint,
    TrainingState,
    collect_checkpoints,
    keep_final_adapter,
)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    load_seconds: float


def load_model(model_path: str) -> LoadedModel:
    from mlx_lm import load

    started = time.perf_counter()
    try:
        model, tokenizer = load(model_path)[:2]
    except Exception as error:  # mlx-lm raises many kinds for a bad path or hub id
        raise UserError(f"--model {model_path}: cannot load: {error}") from error
    return LoadedModel(model, tokenizer, time.perf_counter() - started)


def load_data(data_dir: Path, tokenizer: Any, mask_prompt: bool, need_valid: bool = True):
    """The train and valid splits of a chat-format JSONL directory, cached for training."""
    import types

    from mlx_lm.tuner.datasets import CacheDataset, load_dataset

    if not (data_dir / "train.jsonl").is_file():
        raise UserError(f"--data {data_dir}: no train.jsonl (make one with `just dummy-data`)")
    config = types.SimpleNamespace(data=str(data_dir), train=True, test=False)
    config.mask_prompt = mask_prompt
    try:
        train, valid, _ = load_dataset(config, tokenizer)
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        raise UserError(f"--data {data_dir}: {error} (check it with `just check-data`)") from error
    if need_valid and len(valid) == 0:
        raise UserError(f"--data {data_dir}: valid.jsonl is missing or empty")
    return CacheDataset(train), CacheDataset(valid) if len(valid) else None


def apply_lora(model: Any, settings: LoraSettings) -> dict:
    """Freeze the model and add LoRA layers; returns the adapter_config.json content."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    num_layers = settings.num_layers or len(model.layers)
    problem = too_many_layers(num_layers, len(model.layers))
    if problem:
        raise UserError(f"--num-layers {problem}")
    lora_parameters: dict[str, Any] = {
        "rank": settings.rank,
        "scale": settings.scale,
        "dropout": settings.dropout,
    }
    if settings.keys:
        lora_parameters["keys"] = list(settings.keys)
    model.freeze()
    linear_to_lora_layers(model, num_layers, lora_parameters)
    return {"fine_tune_type": "lora", "num_layers": num_layers, "lora_parameters": lora_parameters}


def write_adapter_config(adapter_dir: Path, adapter_config: dict, model_path: str) -> None:
    adapter_dir.mkdir(parents=True, exist_ok=True)
    config = {**adapter_config, "model": model_path}
    (adapter_dir / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


@dataclass
class PreparedTraining:
    loaded: LoadedModel
    train_set: Any
    valid_set: Any  # None when there is no valid split and none was asked for
    adapter_config: dict  # what adapter_config.json holds, less the model


def prepare_training(
    model_path: str, data_dir: Path, settings: LoraSettings, need_valid: bool = True
) -> PreparedTraining:
    """Load the model and data, seed, and add LoRA layers: the same set-up for a train run, a
    benchmark and every rank of a distributed run, so their numbers stay comparable."""
    loaded = load_model(model_path)
    train_set, valid_set = load_data(data_dir, loaded.tokenizer, settings.mask_prompt, need_valid)
    seed_everything(settings.seed)
    adapter_config = apply_lora(loaded.model, settings)
    return PreparedTraining(loaded, train_set, valid_set, adapter_config)


def make_optimizer(settings: LoraSettings):
    import mlx.optimizers as optim

    rate: Any = settings.learning_rate
    if settings.warmup:
        decay = optim.cosine_decay(settings.learning_rate, max(1, settings.iters - settings.warmup))
        warmup = optim.linear_schedule(0.0, settings.learning_rate, settings.warmup)
        rate = optim.join_schedules([warmup, decay], [settings.warmup])
    return optim.Adam(learning_rate=rate)


def seed_everything(seed: int) -> None:
    import mlx.core as mx
    import numpy as np

    mx.random.seed(seed)
    np.random.seed(seed)  # mlx-lm shuffles batches with numpy


def training_args(settings: LoraSettings, adapter_file: Path):
    from mlx_lm.tuner.trainer import TrainingArgs

    return TrainingArgs(
        batch_size=settings.batch_size,
        iters=settings.iters,
        val_batches=settings.val_batches,
        steps_per_report=settings.steps_per_report,
        steps_per_eval=settings.steps_per_eval,
        steps_per_save=settings.save_every,
        max_seq_length=settings.max_seq_length,
        adapter_file=str(adapter_file),
        grad_checkpoint=settings.grad_checkpoint,
    )


def train_lora(
    loaded: LoadedModel,
    train_set: Any,
    valid_set: Any,
    settings: LoraSettings,
    adapter_file: Path,
    writer: ReportWriter,
    before_training: Callable[[dict[str, Any]], None] | None = None,
    watch: memory.MemoryWatch | None = None,
    resume_from: Checkpoint | None = None,
    rank: int = 0,
) -> None:
    """Run mlx-lm's trainer in this process; checkpoints (with the optimizer state) go beside
    `adapter_file`. `before_training(effective_settings)` runs before the first iteration and
    may raise; `watch` stops the training (a MemoryCeiling error) once mlx's memory passes its
    ceiling; `resume_from` continues a run from that checkpoint (trainstate.py)."""
    import mlx_lm.tuner.trainer as trainer
    from mlx_lm.tuner.callbacks import TrainingCallback

    args = training_args(settings, adapter_file)
    optimizer = make_optimizer(settings)
    if before_training:
        before_training(effective_settings(loaded.model, optimizer, args, train_set))
    state = TrainingState(loaded.model, optimizer, settings, adapter_file.parent, rank)
    if resume_from:
        state.restore(resume_from)

    class Callback(TrainingCallback):
        def on_train_loss_report(self, train_info: dict):
            writer.on_train_loss_report(state.shifted(train_info))

        def on_val_loss_report(self, val_info: dict):
            writer.on_val_loss_report(state.shifted(val_info))

    trainer.TrainUI = QuietUI  # ty: ignore[invalid-assignment]
    writer.start(state.start)
    with memory.grad_checkpoint_undone(loaded.model):
        trainer.train(
            model=loaded.model,
            optimizer=optimizer,
            train_dataset=train_set,
            val_dataset=valid_set,
            args=replace(
                args, iters=settings.iters - state.start, adapter_file=str(state.trainer_file)
            ),
            training_callback=Callback(),
            iterate_batches=memory.watched(watch, state.batches),
        )
    state.finish()


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
            load_seconds = preference.train_preference(db, run.id, plan, adapter_dir)
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
