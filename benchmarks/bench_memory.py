"""The memory plan against mlx's measured peak: LoRA training of the tiny models (float and
4-bit) in eight configurations of batch, sequence length, rank, adapted layers and gradient
checkpointing, 2 iterations each, in one process. The last line is the largest error.

    just bench-memory                   # the table
    just bench-memory --json            # one JSON object per configuration (tests read it)

Every example is longer than the longest max_seq_length, so every batch is max_seq_length
tokens long, as the plan assumes. Before each configuration the previous model is freed and
mlx's peak reset, so each peak is that training's own (mx.get_peak_memory()).
"""

import argparse
import json
import tempfile
from pathlib import Path

from labbench.core import cli
from labbench.core.settings import LoraSettings
from labbench.machine.blas import reexec_with_openblas

# (model: tiny or tiny-q4, batch, max_seq_length, rank, layers (None: all), grad checkpointing)
CONFIGURATIONS = [
    ("tiny", 1, 256, 8, None, False),
    ("tiny", 4, 256, 8, None, False),
    ("tiny", 2, 512, 8, None, False),
    ("tiny", 2, 512, 32, None, False),
    ("tiny", 4, 256, 8, 1, False),
    ("tiny", 2, 512, 8, None, True),
    ("tiny-q4", 2, 256, 8, None, False),
    ("tiny-q4", 2, 256, 16, 2, True),
]
ANSWER_WORDS = 500  # ~630 tokens with the tiny tokenizer: longer than every max_seq_length
ITERATIONS = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per configuration")
    return parser


def measure(model: Path, data: Path, settings: LoraSettings) -> dict:
    """Plan, then train `settings` for real; the predicted and measured peaks in GB."""
    import gc

    import mlx.core as mx
    from sqlite_utils import Database

    from labbench.train.lora import prepare_training, train_lora
    from labbench.train.memory.check import plan_memory
    from labbench.train.memory.plan import GB
    from labbench.train.trainreports import ReportWriter

    plan = plan_memory(str(model), settings, data)
    gc.collect()
    mx.clear_cache()
    mx.reset_peak_memory()
    prepared = prepare_training(str(model), data, settings, need_valid=False)
    writer = ReportWriter(Database(memory=True), 0, settings.steps_per_report, echo=False)
    with tempfile.TemporaryDirectory(prefix="labbench-bench-memory-") as scratch:
        weights = Path(scratch) / "adapters.safetensors"
        train_lora(prepared.loaded, prepared.train_set, None, settings, weights, writer)
    measured = mx.get_peak_memory() / GB
    return {"predicted_gb": plan.prediction.peak / GB, "measured_gb": measured}


def main() -> int:
    args = cli.parse_args(build_parser())
    from labbench.core.formatting import terminal_table
    from labbench.data.dummydata import write_sized_chats
    from labbench.tiny.tinymodel import (
        ensure_tiny_model,
        is_tiny_model_ready,
        quantized_tiny_model_dir,
    )
    from labbench.train.fusemodel import build_quantized_tiny_model

    models = {"tiny": ensure_tiny_model(), "tiny-q4": quantized_tiny_model_dir(4)}
    if not is_tiny_model_ready(models["tiny-q4"]):  # `just tiny-model --quantize 4` builds it
        build_quantized_tiny_model(models["tiny-q4"], 4)
    rows, worst = [], 0.0
    with tempfile.TemporaryDirectory(prefix="labbench-bench-memory-") as scratch:
        data = write_sized_chats(Path(scratch) / "data", [ANSWER_WORDS] * 8)
        for name, batch, length, rank, layers, checkpointing in CONFIGURATIONS:
            settings = LoraSettings(
                iters=ITERATIONS,
                batch_size=batch,
                max_seq_length=length,
                rank=rank,
                num_layers=layers,
                grad_checkpoint=checkpointing,
                steps_per_report=1,
                save_every=ITERATIONS + 1,
            )
            result = measure(models[name], data, settings)
            error = result["measured_gb"] / result["predicted_gb"] - 1
            worst = max(worst, abs(error))
            row = {
                "model": name,
                "batch_size": batch,
                "max_seq_length": length,
                "rank": rank,
                "layers": layers or "all",
                "grad_checkpoint": checkpointing,
                **result,
                "error": error,
            }
            if args.json:
                print(json.dumps(row), flush=True)
            rows.append([*list(row.values())[:6], f"{result['predicted_gb']:.3f}",
                         f"{result['measured_gb']:.3f}", f"{error:+.1%}"])  # fmt: skip
    if not args.json:
        headers = ["model", "batch", "length", "rank", "layers", "checkpointing"]
        print(terminal_table(rows, [*headers, "predicted GB", "measured GB", "error"]))
        print(f"largest error of the plan against mlx's measured peak: {worst:.1%}")
    return 0


if __name__ == "__main__":
    reexec_with_openblas()
    cli.run(main)
