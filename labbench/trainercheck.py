"""Did each setting really reach the trainer? The reference project's grid had a `rank` axis that
was never passed on, so that axis changed nothing. Before the first iteration, a sweep's values
are compared with what mlx-lm's own objects hold, and a difference fails the trial.
"""

import math
from pathlib import Path
from typing import Any

from labbench.errors import UserError
from labbench.fingerprint import dataset_fingerprint


def effective_settings(model: Any, optimizer: Any, args: Any) -> dict[str, Any]:
    """What the trainer will really use, read back from its own objects: the LoRA layers'
    rank and scale and how many blocks have them, the optimizer's peak learning rate over the
    run, and mlx-lm's TrainingArgs."""
    ranks, scales, blocks = set(), set(), 0
    for block in model.layers:
        adapted = [m for _, m in block.named_modules() if hasattr(m, "lora_a")]
        blocks += bool(adapted)
        ranks.update(int(m.lora_a.shape[1]) for m in adapted)  # (in, r) or (experts, r, in)
        scales.update(float(m.scale) for m in adapted)
    schedule = getattr(optimizer, "_schedulers", {}).get("learning_rate")
    if schedule is None:
        rate = float(optimizer.learning_rate)
    else:
        import mlx.core as mx

        rate = max(float(schedule(mx.array(step))) for step in range(args.iters + 1))
    return {
        "rank": ranks.pop() if len(ranks) == 1 else sorted(ranks),
        "scale": scales.pop() if len(scales) == 1 else sorted(scales),
        "num_layers": blocks,
        "learning_rate": rate,
        "iters": args.iters,
        "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
    }


def unreached(expected: dict[str, Any], effective: dict[str, Any]) -> list[str]:
    """The expected settings the trainer does not use, as `key=value (the trainer has X)`.
    Floats match to 6 significant digits (the optimizer holds float32)."""

    def same(a: Any, b: Any) -> bool:
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
