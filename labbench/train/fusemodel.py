"""Fuse a LoRA adapter into its base model, quantize, and check what was written (mlx-lm 0.32).

What mlx-lm does, read in its source, and what we do about it:
- `mlx_lm.fuse` loads the base with the adapter, calls `fuse()` on every LoRA layer, and with
  --dequantize turns quantized layers back into plain ones; `mlx_lm.utils.save` then writes
  the config it loaded and re-saves the tokenizer through transformers' `save_pretrained`.
- That re-save rewrites tokenizer.json and tokenizer_config.json (seen on the tiny model), one
  way a fused model ends up with other special tokens than its base: the reference project's
  eos_token_id 151643 instead of 151645. We copy the base's tokenizer files over the re-saved
  ones and then check the result against the base anyway.
- Quantizing is `mlx_lm.utils.quantize_model` (what `mlx_lm convert -q` calls).
Heavy imports stay inside functions.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from labbench.core.errors import UserError
from labbench.record.fingerprint import chat_template_text, file_sha256, hub_snapshot

# Files that define the tokenizer and chat template: copied from the base, then compared.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "generation_config.json",
)
WARN_BELOW_BITS = 5
BITS_CHOICES = (2, 3, 4, 5, 6, 8)


def model_dir(model: str) -> Path:
    """The local directory of a model: the directory itself, or a hub id's cached snapshot."""
    path = Path(model)
    if path.is_dir():
        return path
    snapshot = hub_snapshot(model)
    if snapshot is None:
        raise UserError(f"model {model} is not a directory and is not in the Hugging Face cache")
    return snapshot


def model_config(model: str) -> dict:
    return json.loads((model_dir(model) / "config.json").read_text())


def quantized_bits(config: dict) -> int | None:
    """The bits of a quantized model's config (mlx-lm writes `quantization`), else None."""
    quantization = config.get("quantization") or config.get("quantization_config") or {}
    return quantization.get("bits") if isinstance(quantization, dict) else None


@dataclass(frozen=True)
class QuantizationPlan:
    dequantize: bool  # turn the base's quantized layers back into plain ones
    bits: int | None  # quantize the fused model to this, or keep it as it is
    warning: str | None  # the one-line warning to show and record


def plan_quantization(
    base_bits: int | None, bits: int | None, dequantize: bool | None
) -> QuantizationPlan:
    """What fusing does about quantization. `dequantize` None means: when the base is
    quantized. Raises UserError for quantizing an already quantized model in place."""
    if dequantize is None:
        dequantize = base_bits is not None
    if bits is not None and bits not in BITS_CHOICES:
        raise UserError(f"--bits {bits}: choose one of {', '.join(map(str, BITS_CHOICES))}")
    if bits is not None and base_bits is not None and not dequantize:
        raise UserError(
            f"--bits {bits}: the base model is already quantized ({base_bits}-bit) and "
            "dequantize=false keeps it so; quantizing quantized weights again compounds the "
            "rounding errors of both. Fuse with dequantize=true (the default) to quantize "
            "the fused full-precision weights once"
        )
    warning = None
    if bits is not None and bits < WARN_BELOW_BITS and base_bits is not None:
        warning = (
            f"re-quantizing to {bits} bits after fusing a {base_bits}-bit base: the reference "
            "project lost accuracy this way (100 % at 8 bits, 60 % at 4); prefer bits=8 and "
            "check the verdict"
        )
    return QuantizationPlan(dequantize, bits, warning)


def fuse_into(
    base: str,
    adapter: Path,
    out: Path,
    plan: QuantizationPlan,
    group_size: int | None = None,
) -> None:
    """Fuse `adapter` into `base` and write the model to `out` (an empty directory)."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import dequantize_model, load, quantize_model, save

    try:
        loaded = load(base, adapter_path=str(adapter), return_config=True)
        model, tokenizer, config = loaded  # ty: ignore[invalid-assignment]
    except Exception as error:  # mlx-lm raises many kinds for a bad model or adapter
        raise UserError(f"cannot load {base} with the adapter {adapter}: {error}") from error
    fused = [
        (name, module.fuse(dequantize=plan.dequantize))
        for name, module in model.named_modules()
        if hasattr(module, "fuse")
    ]
    if not fused:
        raise UserError(f"{adapter}: no LoRA layers were loaded, nothing to fuse")
    model.update_modules(tree_unflatten(fused))
    if plan.dequantize:
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    if plan.bits is not None:
        model, config = quantize_model(model, config, group_size, plan.bits)
    save(out, base, model, tokenizer, config, donate_model=False)
    copy_tokenizer_files(model_dir(base), out)


def quantize_into(source: Path, out: Path, bits: int, group_size: int | None = None) -> None:
    """`mlx_lm convert -q` of a local model into `out`, keeping its tokenizer files as they are."""
    from mlx_lm.utils import load, quantize_model, save

    model, tokenizer, config = load(str(source), return_config=True)  # ty: ignore[invalid-assignment]
    if quantized_bits(config) is not None:
        raise UserError(f"{source} is already quantized")
    model, config = quantize_model(model, config, group_size, bits)
    save(out, str(source), model, tokenizer, config, donate_model=False)
    copy_tokenizer_files(source, out)


def copy_tokenizer_files(base: Path, out: Path) -> None:
    """The base's tokenizer files, byte for byte, replacing what `save_pretrained` wrote (and
    removing a re-saved file the base does not have, e.g. a chat_template.jinja split off)."""
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            shutil.copyfile(base / name, out / name)
        elif name not in ("generation_config.json",):
            (out / name).unlink(missing_ok=True)


def special_token_ids(directory: Path) -> dict:
    """eos and bos token ids as config.json and generation_config.json give them."""
    found = {}
    for name in ("config.json", "generation_config.json"):
        path = directory / name
        if path.is_file():
            data = json.loads(path.read_text())
            for key in ("eos_token_id", "bos_token_id"):
                if key in data:
                    found[f"{name}:{key}"] = data[key]
    return found


def tokenizer_mismatches(base: Path, fused: Path) -> list[str]:
    """How the fused model's tokenizer differs from its base's (empty when it does not):
    eos/bos token ids, chat template, tokenizer files."""
    problems = []
    base_ids, fused_ids = special_token_ids(base), special_token_ids(fused)
    for key in sorted(set(base_ids) | set(fused_ids)):
        if base_ids.get(key) != fused_ids.get(key):
            problems.append(f"{key} is {fused_ids.get(key)}, the base has {base_ids.get(key)}")
    if chat_template_text(base) != chat_template_text(fused):
        problems.append("the chat template differs from the base's")
    for name in TOKENIZER_FILES:
        if name == "generation_config.json":
            continue  # its token ids are compared above; mlx-lm may write its own
        here, there = base / name, fused / name
        if here.is_file() != there.is_file():
            problems.append(f"{name} is {'missing' if here.is_file() else 'extra'}")
        elif here.is_file() and file_sha256(here) != file_sha256(there):
            problems.append(f"{name} differs from the base's")
    return problems


def check_generates(directory: Path) -> dict:
    """Load the written model and generate one token; returns the loaded eos token ids.
    Raises UserError when it cannot."""
    from mlx_lm import generate, load

    try:
        model, tokenizer = load(str(directory))[:2]
        messages = [{"role": "user", "content": "hi"}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        text = generate(model, tokenizer, prompt, max_tokens=1, verbose=False)
    except Exception as error:  # whatever the loader or generator raises, say it in one line
        raise UserError(f"the fused model does not load and generate: {error}") from error
    return {"eos_token_ids": sorted(tokenizer.eos_token_ids), "one_token": text}


def build_quantized_tiny_model(out_dir: Path, bits: int) -> Path:
    """The tiny model (models/tiny, built if missing) quantized to `bits` into out_dir, as
    `mlx_lm convert -q` would: a quantized base to try QLoRA and fusing on, offline."""
    from labbench.tiny.tinymodel import build_atomically, build_lock, ensure_tiny_model

    source = ensure_tiny_model()
    out_dir = Path(out_dir)
    with build_lock(out_dir):
        build_atomically(out_dir, lambda tmp: quantize_into(source, tmp, bits))
    return out_dir
