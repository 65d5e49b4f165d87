"""LoRA on one process through mlx-lm's Python API: load the model and data, add the LoRA
layers, and run mlx-lm's trainer with our callback, memory watch and resumable state. What is
trained, recorded and evaluated is labbench/train/training.py's; the preference methods
(labbench/train/preference/) and every rank of a distributed run reuse this set-up.

Numbers come from mlx-lm's `TrainingCallback` (mlx-lm 0.32 no longer prints it/s or peak
memory), never from stdout. Verified gotchas handled here:
- `mlx_lm.lora.run(args, training_callback=cb)` ignores `cb`, so we call `tuner.train()`.
- `train()` does not write `adapter_config.json`, which the server and fuse need.
- The last report window's `iterations_per_second` assumes a full window; we correct it, and
  `train()` always draws its rich UI, which we replace (both in labbench/train/trainreports.py).
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.train.memory import watch as memory
from labbench.train.trainercheck import effective_settings, too_many_layers
from labbench.train.trainreports import QuietUI, ReportWriter
from labbench.train.trainstate import ADAPTER_CONFIG, Checkpoint, TrainingState


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
