"""Did each setting really reach the trainer? The reference project's grid had a `rank` axis that
was never passed on, so that axis changed nothing. Before the first iteration, a sweep's values
are compared with what mlx-lm's own objects hold, and a difference fails the trial. Before any
run starts, num_layers is checked against the model's config.json (`just train` and sweeps).
"""

import json
import math
from pathlib import Path
from typing import Any

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.record.fingerprint import dataset_fingerprint, hub_snapshot


def effective_settings(
    model: Any, optimizer: Any, args: Any, train_set: Any = None
) -> dict[str, Any]:
    """What the trainer will really use, read back from its own objects: the LoRA layers'
    rank, scale, dropout and module names and how many blocks have them, the optimizer's peak
    learning rate and the step it is reached (the warm-up), mlx-lm's TrainingArgs, and whether
    the training set masks the prompt. The seed leaves no trace in them and is not here."""
    ranks, scales, dropouts, keys, blocks = set(), set(), set(), set(), 0
    for block in model.layers:
        adapted = [(name, m) for name, m in block.named_modules() if hasattr(m, "lora_a")]
        blocks += bool(adapted)
        for name, module in adapted:
            keys.add(name)
            ranks.add(int(module.lora_a.shape[1]))  # (in, r) or (experts, r, in)
            scales.add(float(module.scale))
            dropouts.add(1 - float(getattr(module.dropout, "_p_1", 1.0)))
    schedule = getattr(optimizer, "_schedulers", {}).get("learning_rate")
    if schedule is None:
        rate, warmup = float(optimizer.learning_rate), 0
    else:
        import mlx.core as mx

        rates = [float(schedule(mx.array(step))) for step in range(args.iters + 1)]
        rate = max(rates)
        warmup = rates.index(rate)
    effective = {
        "rank": _one_or_all(ranks),
        "scale": _one_or_all(scales),
        "dropout": _one_or_all(dropouts),
        "keys": tuple(sorted(keys)),
        "num_layers": blocks,
        "learning_rate": rate,
        "warmup": warmup,
        "iters": args.iters,
        "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
        "val_batches": args.val_batches,
        "steps_per_report": args.steps_per_report,
        "steps_per_eval": args.steps_per_eval,
        "save_every": args.steps_per_save,
    }
    # A CacheDataset around mlx-lm's ChatDataset or CompletionsDataset, which hold the flag.
    dataset = getattr(train_set, "_data", train_set)
    if hasattr(dataset, "mask_prompt"):
        effective["mask_prompt"] = bool(dataset.mask_prompt)
    return effective


def _one_or_all(values: set) -> Any:
    return values.pop() if len(values) == 1 else sorted(values)


def unreached(expected: dict[str, Any], effective: dict[str, Any]) -> list[str]:
    """The expected settings the trainer does not use, as `key=value (the trainer has X)`.
    Floats match to 6 significant digits (the optimizer holds float32)."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):  # module names
            return sorted(a) == sorted(b)
        if isinstance(a, float) or isinstance(b, float):
            try:
                return math.isclose(float(a), float(b), rel_tol=1e-6)
            except (TypeError, ValueError):
                return False
        return a == b

    return [
        f"{key}={value} (the trainer has {effective.get(key)})"
        for key, value in expected.items()
        if key in effective and not same(value, effective[key])
    ]


def check_reached(expect: dict[str, Any] | None, data: Path, effective: dict[str, Any]) -> None:
    """Raise UserError when a setting in `expect` is not what the trainer uses; `data` is the
    directory the trainer loaded, and expect["data"] the fingerprint it should have."""
    if not expect:
        return
    effective = {**effective, "data": dataset_fingerprint(data)}
    missed = unreached(expect, effective)
    if missed:
        raise UserError(f"a sweep setting did not reach the trainer: {'; '.join(missed)}")


def config_layers(model: str) -> int | None:
    """The blocks a model has by its config.json (`num_hidden_layers`), read without loading
    it: a directory, or a hub id's cached snapshot; None when that cannot be known."""
    directory = Path(model) if Path(model).is_dir() else hub_snapshot(model)
    try:
        config = json.loads((directory / "config.json").read_text()) if directory else {}
    except (OSError, ValueError):
        return None
    if isinstance(config, dict) and isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], **config}  # a multimodal model's language part
    layers = config.get("num_hidden_layers") if isinstance(config, dict) else None
    return layers if isinstance(layers, int) and not isinstance(layers, bool) else None


def too_many_layers(num_layers: int | None, available: int | None) -> str | None:
    """Why LoRA cannot adapt `num_layers` blocks of a model with `available`, if it cannot."""
    if num_layers is not None and available is not None and num_layers > available:
        return f"{num_layers}: the model has only {available} layers"
    return None


def check_layers(settings: LoraSettings, model: str) -> None:
    """Refuse --num-layers beyond the model's blocks before anything runs, when config.json
    tells (apply_lora checks again on the loaded model)."""
    problem = too_many_layers(settings.num_layers, config_layers(model))
    if problem:
        raise UserError(f"--num-layers {problem}")
