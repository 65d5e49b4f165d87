"""The project's own tiny model, built offline in a few seconds: the default model everywhere.

A real mlx-lm architecture (Qwen2, random fp32 weights) with the byte-level BPE tokenizer of
labbench.tiny.tinytokenizer and the chat template of labbench.tiny.chattemplate, so
mlx_lm.server parses `<tool_call>` output into OpenAI `tool_calls`. The same seed gives
byte-identical files. This module also builds model directories atomically, one builder at a time
(labbench.tiny.pretrain uses that too). Heavy imports (mlx, mlx_lm, tokenizers) stay inside
functions.
"""

import fcntl
import json
import os
import shutil
import sys
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.tiny.chattemplate import CHAT_TEMPLATE
from labbench.tiny.tinytokenizer import EOS_TOKEN, PAD_TOKEN, VOCAB_SIZE, train_tokenizer

TINY_MODEL_DIR = PROJECT_ROOT / "models" / "tiny"

# --- defaults -----------------------------------------------------------------------------
# Architecture: close to the feasibility run in tiny-model-notes.md (~1.05 M parameters).
HIDDEN_SIZE = 128  # width of the residual stream
NUM_LAYERS = 4  # transformer blocks
INTERMEDIATE_SIZE = 384  # SwiGLU hidden width
NUM_HEADS = 2  # attention heads (head_dim = 64)
NUM_KV_HEADS = 2  # key/value heads: 2 = plain multi-head, 1 = grouped-query
MAX_POSITIONS = 4096  # the tools header plus a prompt must fit
ROPE_THETA = 10000.0
RMS_NORM_EPS = 1e-6
INIT_STD = 0.02  # normal init of every matrix, as HF Qwen2 (`initializer_range`)


# The files of a built model; the build is atomic, so their presence means "ready".
MODEL_FILES = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
]


def is_tiny_model_ready(out_dir: Path) -> bool:
    out_dir = Path(out_dir)
    return all((out_dir / name).is_file() for name in MODEL_FILES)


def ensure_tiny_model(out_dir: Path = TINY_MODEL_DIR) -> Path:
    """Build the tiny model if it is missing; concurrent callers wait for one build."""
    return ensure_model(out_dir, _build, "building the tiny model in {dir} (first use)...")


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Build (or rebuild) the model into out_dir atomically: a temp dir beside it, then rename."""
    out_dir = Path(out_dir)
    with build_lock(out_dir):
        _build(out_dir, seed)
    return out_dir


def quantized_tiny_model_dir(bits: int) -> Path:
    return TINY_MODEL_DIR.parent / f"tiny-q{bits}"


def ensure_model(out_dir: Path, build: Callable[[Path, int], None], announce: str) -> Path:
    """Run build(out_dir, seed 0) if out_dir holds no model yet, saying `announce` (its {dir}
    is the directory) first; concurrent callers wait for one build."""
    out_dir = Path(out_dir)
    if is_tiny_model_ready(out_dir):
        return out_dir
    with build_lock(out_dir):
        if not is_tiny_model_ready(out_dir):
            print(announce.format(dir=_shown(out_dir)), file=sys.stderr)
            build(out_dir, 0)
    return out_dir


def build_atomically(out_dir: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) into a temp dir beside out_dir, then swap it in: out_dir is never half-built.
    Refuses to replace a directory that is not a model."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "config.json").exists():
        raise UserError(f"refusing to replace {_shown(out_dir)}: it is not a model directory")
    tmp = out_dir.parent / f".{out_dir.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        _swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(out_dir: Path, seed: int) -> None:
    build_atomically(out_dir, lambda tmp: write_tiny_model(tmp, seed))


def write_tiny_model(out_dir: Path, seed: int) -> None:
    """The tokenizer, template, config and random weights of the tiny model, into out_dir."""
    tokenizer = train_tokenizer()
    tokenizer.save(str(out_dir / "tokenizer.json"), pretty=True)
    (out_dir / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    _write_json(out_dir / "tokenizer_config.json", _tokenizer_config())
    config = _model_config(tokenizer)
    _write_json(out_dir / "config.json", config)
    _write_weights(out_dir / "model.safetensors", config, seed)


def _swap_in(new: Path, dst: Path) -> None:
    if not dst.exists():
        new.rename(dst)
        return
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    dst.rename(old)
    new.rename(dst)
    shutil.rmtree(old)


@contextmanager
def build_lock(out_dir: Path) -> Generator[None]:
    """One builder per model directory at a time, across processes."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes or the process dies
        yield


def _shown(path: Path) -> str:
    """The path relative to the working directory when it is under it (models/tiny)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _tokenizer_config() -> dict:
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": None,
        "add_bos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": MAX_POSITIONS,
        "split_special_tokens": False,
        "tool_parser_type": "json_tools",
    }


# --- model ----------------------------------------------------------------------------------


def _model_config(tokenizer) -> dict:
    eos_ids = [tokenizer.token_to_id(EOS_TOKEN), tokenizer.token_to_id(PAD_TOKEN)]
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": HIDDEN_SIZE,
        "num_hidden_layers": NUM_LAYERS,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_attention_heads": NUM_HEADS,
        "num_key_value_heads": NUM_KV_HEADS,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POSITIONS,
        "rope_theta": ROPE_THETA,
        "rms_norm_eps": RMS_NORM_EPS,
        "initializer_range": INIT_STD,
        "tie_word_embeddings": True,
        "vocab_size": VOCAB_SIZE,
        "bos_token_id": None,
        "eos_token_id": eos_ids,
        "pad_token_id": tokenizer.token_to_id(PAD_TOKEN),
        "torch_dtype": "float32",
        "use_sliding_window": False,
        "attention_dropout": 0.0,
    }


def _write_weights(path: Path, config: dict, seed: int) -> None:
    """HF Qwen2's init: normal(0, INIT_STD) matrices, zero biases, unit RMSNorm weights."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    mx.random.seed(seed)
    weights = {}
    params = tree_flatten(model.parameters())
    shapes = {name: param.shape for name, param in params if isinstance(param, mx.array)}
    for name, shape in sorted(shapes.items()):
        if name.endswith("norm.weight"):
            weights[name] = mx.ones(shape, dtype=mx.float32)
        elif name.endswith(".bias"):
            weights[name] = mx.zeros(shape, dtype=mx.float32)
        else:
            weights[name] = INIT_STD * mx.random.normal(shape, dtype=mx.float32)
    mx.eval(weights)
    mx.save_safetensors(str(path), weights, metadata={"format": "mlx"})
