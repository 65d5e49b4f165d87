"""Preference and RL training (--method dpo, orpo, grpo) through mlx-lm-lora's trainers, recorded
like SFT: the loss in `train_reports`, each method's own numbers in `train_metrics`, both from
its TrainingCallback (never stdout), checkpoints every save_every iterations in the adapter
directory (labbench/train/training.py collects and evaluates them).

- The prompts are rendered with the tools they offer, by the model's chat template, as the
  server renders an eval's request; a DPO/ORPO answer is the assistant's text (a call in the
  template's own markup, e.g. <tool_call>{json}</tool_call>).
- DPO and GRPO compare the policy with a frozen reference: the starting model (with the
  starting adapter, when there is one). ORPO needs none.
- GRPO's rewards are the eval's scorer (preference/rewards.py). It has no validation split:
  a GRPO step is judged by its rewards, and the checkpoints by evals (--eval-suite).
- Starting from an adapter (--adapter, e.g. an SFT run's) continues its LoRA layers: the new
  adapter has its rank, scale and layers, and works wherever the old one did.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.eval.adapterbase import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from labbench.train import lora
from labbench.train.memory import watch as memory
from labbench.train.preference.upstream import cpu_device_info, quiet_progress
from labbench.train.trainreports import ReportWriter

# Keys of a report that are not the method's own metrics (they go to train_reports).
REPORT_KEYS = {
    "iteration",
    "train_loss",
    "val_loss",
    "learning_rate",
    "iterations_per_second",
    "tokens_per_second",
    "trained_tokens",
    "peak_memory",
    "val_time",
}


class MetricsWriter(ReportWriter):
    """ReportWriter, plus every other number of the report as a `train_metrics` row."""

    def on_train_loss_report(self, info: dict) -> None:
        super().on_train_loss_report(_floats(info))
        # This process's CPU seconds so far (every thread): on a machine shared with other
        # work, a steadier measure of the training's own cost than the wall clock.
        self._metrics({**info, "cpu_seconds": time.process_time()}, "train")

    def on_val_loss_report(self, info: dict) -> None:
        super().on_val_loss_report(_floats(info))
        self._metrics(info, "val")

    def _metrics(self, info: dict, split: str) -> None:
        prefix = f"{split}_"
        self.db.table("train_metrics").insert_all(
            {
                "run_id": self.run_id,
                "iteration": info["iteration"],
                "split": split,
                "name": key.removeprefix(prefix),
                "value": float(value),
            }
            for key, value in info.items()
            if key not in REPORT_KEYS
        )


def _floats(info: dict) -> dict:
    """mlx-lm-lora hands some numbers over as 0-d mlx arrays."""
    return {key: float(value) if hasattr(value, "item") else value for key, value in info.items()}


def lineage(db: Database, adapter: Path) -> dict:
    """Where a run that continues `adapter` starts: the directory, and the train run that
    made it when this ledger has it."""
    made_by = [
        row["id"]
        for row in db.query(
            "SELECT id FROM runs WHERE kind = 'train' AND adapter IN (?, ?) ORDER BY id",
            [str(adapter), str(adapter.resolve())],
        )
    ]
    return {
        "start_adapter": str(adapter.resolve()),
        "start_run_id": made_by[-1] if made_by else None,
    }


def start_adapter_config(adapter: Path) -> dict:
    """The starting adapter's adapter_config.json (its LoRA shape and base model)."""
    try:
        config = json.loads((adapter / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"--adapter {adapter}: no readable {ADAPTER_CONFIG}: {error}") from None
    if not (adapter / ADAPTER_WEIGHTS).is_file():
        raise UserError(f"--adapter {adapter}: no {ADAPTER_WEIGHTS}")
    if config.get("fine_tune_type", "lora") != "lora":
        raise UserError(f"--adapter {adapter}: a {config.get('fine_tune_type')} adapter, not LoRA")
    return config


def policy(model_path: str, settings: LoraSettings, adapter: Path | None):
    """The model with LoRA layers: fresh ones, or the starting adapter's, loaded."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    loaded = lora.load_model(model_path)
    if adapter is None:
        return loaded, lora.apply_lora(loaded.model, settings)
    config = start_adapter_config(adapter)
    loaded.model.freeze()
    linear_to_lora_layers(loaded.model, config["num_layers"], config["lora_parameters"])
    loaded.model.load_weights(str(adapter / ADAPTER_WEIGHTS), strict=False)
    keep = ("fine_tune_type", "num_layers", "lora_parameters")
    return loaded, {key: config[key] for key in keep if key in config}


def reference(model_path: str, settings: LoraSettings, adapter: Path | None) -> Any:
    """The frozen model the policy is compared with: where training starts."""
    if adapter is None:
        model = lora.load_model(model_path).model
    else:
        model = policy(model_path, settings, adapter)[0].model
    model.freeze()
    model.eval()
    return model


def render_prompt(tokenizer: Any, system: str | None, user: str, tools: list | None) -> list[int]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    return list(
        tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True)
    )


class PairDataset:
    """DPO/ORPO pairs tokenized with their tools, in the item form mlx-lm-lora's trainers read."""

    def __init__(self, file: Path, tokenizer: Any):
        self.items = []
        for line in file.read_text(encoding="utf-8").splitlines():
            pair = json.loads(line)
            prompt = render_prompt(tokenizer, pair.get("system"), pair["prompt"], pair.get("tools"))
            item: dict[str, Any] = {"preference_score": float(pair.get("preference_score", 1.0))}
            for key in ("chosen", "rejected"):
                messages = (
                    [{"role": "system", "content": pair["system"]}] if "system" in pair else []
                )
                messages += [
                    {"role": "user", "content": pair["prompt"]},
                    {"role": "assistant", "content": pair[key]},
                ]
                tokens = list(
                    tokenizer.apply_chat_template(messages, tools=pair.get("tools") or None)
                )
                if tokens[: len(prompt)] != prompt:
                    raise UserError(
                        f"{file}: the chat template does not render the {key} answer after the"
                        " prompt, so the prompt cannot be masked"
                    )
                item[key] = tokens
                item[f"{key}_prompt_length"] = len(prompt)
            self.items.append(item)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)


def grpo_dataset(suite, tokenizer: Any) -> list[tuple]:
    """mlx-lm-lora's GRPO tuples; the prompt id rides in the answer and type slots."""
    rows = []
    for prompt in suite.prompts:
        tokens = render_prompt(tokenizer, prompt.system, prompt.prompt, suite.request_tools(prompt))
        rows.append((tokens, [], prompt.prompt, prompt.id, prompt.id))
    return rows


def train_preference(db: Database, run_id: int, plan, adapter_dir: Path) -> float:
    """Train plan.settings.method (a training.TrainPlan) into adapter_dir; returns the
    model's load time."""
    model_path, data, settings = plan.model, plan.data, plan.settings
    start_adapter = plan.start_adapter
    if start_adapter:  # the lineage, in the run's config
        config = json.loads(db.table("runs").get(run_id)["config"])
        config |= lineage(db, start_adapter)
        db.table("runs").update(run_id, {"config": json.dumps(config, sort_keys=True)})
    lora.seed_everything(settings.seed)
    loaded, adapter_config = policy(model_path, settings, start_adapter)
    lora.write_adapter_config(adapter_dir, adapter_config, model_path)
    writer = MetricsWriter(
        db, run_id, settings.steps_per_report, rate_assumes_full_window=settings.method != "grpo"
    )
    optimizer = lora.make_optimizer(settings)
    adapter_file = adapter_dir / ADAPTER_WEIGHTS
    common = {
        "batch_size": settings.batch_size,
        "iters": settings.iters,
        "val_batches": settings.val_batches,
        "steps_per_report": settings.steps_per_report,
        "steps_per_eval": settings.steps_per_eval,
        "steps_per_save": settings.save_every,
        "max_seq_length": settings.max_seq_length,
        "adapter_file": str(adapter_file),
    }
    watch = memory.MemoryWatch(plan.memory_ceiling) if plan.memory_ceiling else None
    if settings.method == "grpo":
        _grpo(
            db, run_id, loaded, model_path, data, settings, start_adapter, optimizer, writer,
            common, watch,
        )  # fmt: skip
    else:
        _pairs(
            loaded, model_path, Path(data), settings, start_adapter, optimizer, writer, common,
            watch,
        )  # fmt: skip
    return loaded.load_seconds


def _callback(writer: MetricsWriter):
    from mlx_lm.tuner.callbacks import TrainingCallback

    class Callback(TrainingCallback):
        def on_train_loss_report(self, train_info: dict):
            writer.on_train_loss_report(train_info)

        def on_val_loss_report(self, val_info: dict):
            writer.on_val_loss_report(val_info)

    return Callback()


def _pairs(
    loaded: lora.LoadedModel,
    model_path,
    data: Path,
    settings,
    start,
    optimizer,
    writer,
    common,
    watch: memory.MemoryWatch | None,
):
    train = PairDataset(data / "train.jsonl", loaded.tokenizer)
    valid = PairDataset(data / "valid.jsonl", loaded.tokenizer)
    if len(train) < settings.batch_size:
        raise UserError(f"--data {data}: {len(train)} pairs, fewer than --batch-size")
    callback = _callback(writer)
    if settings.method == "dpo":
        from mlx_lm_lora.trainer import dpo_trainer

        args = dpo_trainer.DPOTrainingArgs(
            **common, beta=settings.beta, loss_type=settings.loss_type
        )
        ref = reference(model_path, settings, start)
        watching = memory.watched_in(dpo_trainer, "iterate_dpo_batches", watch)
        with cpu_device_info(), quiet_progress(dpo_trainer), watching:
            writer.start()
            dpo_trainer.train_dpo(
                loaded.model, ref, optimizer, train, valid, args=args,
                training_callback=callback, loss_type=settings.loss_type,
            )  # fmt: skip
    else:
        from mlx_lm_lora.trainer import orpo_trainer

        args = orpo_trainer.ORPOTrainingArgs(**common, beta=settings.beta)
        watching = memory.watched_in(orpo_trainer, "iterate_orpo_batches", watch)
        with cpu_device_info(), quiet_progress(orpo_trainer), watching:
            writer.start()
            orpo_trainer.train_orpo(
                loaded.model, optimizer, train, valid, args=args, training_callback=callback
            )


def _grpo(
    db,
    run_id,
    loaded: lora.LoadedModel,
    model_path,
    data,
    settings,
    start,
    optimizer,
    writer,
    common,
    watch: memory.MemoryWatch | None,
):
    from mlx_lm_lora.trainer import grpo_trainer as module

    from labbench.data.grpodata import grpo_splits
    from labbench.train.preference.rewards import RewardLog

    suite, _ = grpo_splits(data)
    train = grpo_dataset(suite, loaded.tokenizer)
    if len(train) < settings.batch_size:
        raise UserError(f"--data {data}: {len(train)} prompts, fewer than --batch-size")
    rewards = RewardLog(db, run_id, suite, settings, loaded.tokenizer)
    args = module.GRPOTrainingArgs(
        **common,
        group_size=settings.group_size,
        beta=settings.beta,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        reward_weights=list(rewards.weights),
    )
    ref = reference(model_path, settings, start) if settings.beta else None
    with cpu_device_info(), quiet_progress(module):
        writer.start()
        module.train_grpo(
            loaded.model, ref, loaded.tokenizer, optimizer, train, None,
            reward_funcs=rewards.functions(), args=args, training_callback=_callback(writer),
            end_answer_token="", iterate_batches=memory.watched(watch, module.iterate_grpo_batches),
        )  # fmt: skip
