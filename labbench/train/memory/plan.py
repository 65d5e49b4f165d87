"""Will a LoRA training fit in memory? Predicted from the model's config.json before anything
is loaded, and compared with the memory this machine has.

The parameter shapes come from mlx-lm's own model class, built lazily from config.json
(mlx allocates nothing until an array is evaluated, and nothing here is), quantized as the
config says, with mlx-lm's LoRA layers added: exact sizes for every architecture mlx-lm knows,
without reading a weight. The activations are counted per token (README: "The memory plan"):

    peak = weights + trainable x (1 + OPTIMIZER_COPIES)
         + tokens x element size x (LOGIT_COPIES x vocab + kept blocks x block)
    block = HIDDEN_COPIES x hidden + MLP_COPIES x mlp width + heads x length + LoRA ranks
    tokens = batch x (length - 1); kept blocks = the adapted blocks (gradient checkpointing:
    one block, plus each adapted block's input)
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labbench.core.errors import UserError
from labbench.record.fingerprint import hub_snapshot

GB = 1e9  # mlx-lm reports peak memory in units of 1e9 bytes: so does the plan

# Arrays alive at the peak of a training step, per token, counted on mlx 0.32 with the tiny
# models (tests/test_memoryplan.py holds the prediction to 20 % of mlx's measured peak).
LOGIT_COPIES = 7  # vocab-sized: the logits, the loss's softmax and exp, the logits' gradient
HIDDEN_COPIES = 12  # hidden-sized, saved per adapted block for the backward pass
MLP_COPIES = 4  # gate, up, silu(gate) and their product
OPTIMIZER_COPIES = 3  # per trainable weight: its gradient and Adam's two moments
PAD_TO = 32  # mlx-lm pads each batch to 1 + a multiple of 32 tokens, up to max_seq_length

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs to know of a model, all from config.json."""

    weights_bytes: int  # as loaded: quantized layers at their bits, with scales and biases
    quantization: str  # "4-bit", "mixed 4/8-bit", "none"
    trainable_params: int  # the LoRA weights (float32, as mlx-lm creates them)
    trainable_bytes: int
    element_bytes: int  # one activation value: the model's dtype
    vocab: int
    hidden: int
    mlp_width: int  # intermediate size; a mixture of experts: experts per token x their width
    heads: int
    blocks: int
    adapted_blocks: int
    lora_ranks: int  # the LoRA ranks of one adapted block, summed over its adapted layers


@dataclass(frozen=True)
class Workload:
    batch_size: int  # rows of one step in one process
    length: int  # tokens per padded row: the longest batch training will see
    grad_checkpoint: bool = False
    length_source: str = "max_seq_length"  # or "the data's longest example"


@dataclass(frozen=True)
class Prediction:
    weights: float  # bytes
    adapters: float  # LoRA weights, their gradients and the optimizer state
    activations: float

    @property
    def peak(self) -> float:
        return self.weights + self.adapters + self.activations


def predict(shape: ModelShape, work: Workload) -> Prediction:
    """The peak of one training step, in bytes (the formula in this module's docstring)."""
    length = work.length - 1  # the model sees each row but its last token
    tokens = work.batch_size * length
    block = (
        HIDDEN_COPIES * shape.hidden
        + MLP_COPIES * shape.mlp_width
        + shape.heads * length
        + shape.lora_ranks
    )
    if work.grad_checkpoint:  # block inputs are kept; one block is recomputed at a time
        kept = block + shape.adapted_blocks * shape.hidden
    else:
        kept = shape.adapted_blocks * block
    per_token = shape.element_bytes * (LOGIT_COPIES * shape.vocab + kept)
    return Prediction(
        weights=shape.weights_bytes,
        adapters=shape.trainable_bytes * (1 + OPTIMIZER_COPIES),
        activations=tokens * per_token,
    )


def read_config(model: str) -> dict[str, Any]:
    """A model's config.json: a directory's, a hub id's cached one, else only that file is
    fetched from the hub. A UserError names the model when none can be had."""
    directory = Path(model) if Path(model).is_dir() else hub_snapshot(model)
    if directory is not None:
        path = directory / "config.json"
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model, "config.json"))
        except Exception as error:  # offline, no such repo, a gated one: the hub raises many
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
            raise UserError(
                f"--model {model}: cannot fetch its config.json to plan memory ({reason}); "
                "pass a directory holding it, or plan=force to train without a plan"
            ) from None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"--model {model}: cannot read {path} ({error})") from None
    if not isinstance(config, dict):
        raise UserError(f"--model {model}: {path} is not a JSON object")
    if isinstance(config.get("text_config"), dict):  # a multimodal model's language part
        config = {**config["text_config"], **config}
    return config


def model_shape(
    config: dict[str, Any], rank: int, num_layers: int | None, keys: tuple[str, ...] | None
) -> ModelShape:
    """Build mlx-lm's model for `config` lazily (nothing is allocated), quantize it as the
    config says, add LoRA layers as training will, and read the sizes off it."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import _get_classes

    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    element_bytes = DTYPE_BYTES.get(dtype, 2)
    try:
        model_class, args_class = _get_classes(config)
        model = model_class(args_class.from_dict(config))
    except Exception as error:  # an unknown model_type, or a config mlx-lm cannot read
        raise UserError(f"config.json: mlx-lm cannot build this model ({error})") from None
    model.set_dtype(getattr(mx, dtype, mx.bfloat16))
    quantization = config.get("quantization") or config.get("quantization_config")
    bits = {}
    if isinstance(quantization, dict) and "bits" in quantization:
        group = quantization.get("group_size", 64)

        def quantized(path: str, module: Any) -> bool | dict:
            if isinstance(quantization.get(path), dict):  # a layer with bits of its own
                bits[path] = quantization[path].get("bits")
                return quantization[path]
            if not hasattr(module, "to_quantized") or module.weight.shape[-1] % group:
                return False
            bits[path] = quantization["bits"]
            return True

        nn.quantize(
            model,
            group_size=group,
            bits=quantization["bits"],
            mode=quantization.get("mode", "affine"),
            class_predicate=quantized,
        )
    weights = sum(array.nbytes for array in arrays(model.parameters()))
    blocks = len(model.layers)
    adapted = blocks if num_layers is None else min(num_layers, blocks)
    model.freeze()
    lora: dict[str, Any] = {"rank": rank, "scale": 1.0, "dropout": 0.0}
    if keys:
        lora["keys"] = list(keys)
    linear_to_lora_layers(model, adapted, lora)
    trainable = arrays(model.trainable_parameters())
    lora_ranks = sum(
        rank for _, module in model.layers[-1].named_modules() if hasattr(module, "lora_a")
    )
    kinds = sorted({b for b in bits.values() if b})
    return ModelShape(
        weights_bytes=weights,
        quantization=(
            "none"
            if not kinds
            else f"{kinds[0]}-bit"
            if len(kinds) == 1
            else "mixed " + "/".join(map(str, kinds)) + "-bit"
        ),
        trainable_params=sum(array.size for array in trainable),
        trainable_bytes=sum(array.nbytes for array in trainable),
        element_bytes=element_bytes,
        vocab=int(config["vocab_size"]),
        hidden=int(config["hidden_size"]),
        mlp_width=mlp_width(config),
        heads=int(config["num_attention_heads"]),
        blocks=blocks,
        adapted_blocks=adapted,
        lora_ranks=lora_ranks,
    )


def arrays(tree: Any) -> list[Any]:
    """The arrays of a module's parameter tree."""
    from mlx.utils import tree_flatten

    flat = tree_flatten(tree)  # a list of (name, array) unless asked for a dict
    return list(flat.values()) if isinstance(flat, dict) else [array for _, array in flat]


def mlp_width(config: dict[str, Any]) -> int:
    """The MLP's hidden width a token passes through: a mixture of experts runs
    num_experts_per_tok experts of moe_intermediate_size (and a shared expert, if any)."""
    experts = config.get("num_experts_per_tok")
    if experts and config.get("moe_intermediate_size"):
        shared = config.get("shared_expert_intermediate_size") or 0
        return int(experts) * int(config["moe_intermediate_size"]) + int(shared)
    return int(config.get("intermediate_size") or 4 * config["hidden_size"])


def padded_length(longest: int, max_seq_length: int) -> int:
    """The row length of the batch holding the longest example, as mlx-lm pads it."""
    return min(1 + PAD_TO * math.ceil(longest / PAD_TO), max_seq_length)


def longest_example(model: str, data: Path, mask_prompt: bool) -> int | None:
    """The longest training example in tokens, with the model's tokenizer and chat template
    (as mlx-lm will tokenize it); None when the tokenizer is not on this machine."""
    directory = Path(model) if Path(model).is_dir() else hub_snapshot(model)
    if directory is None or not (directory / "tokenizer_config.json").is_file():
        return None
    import types

    from mlx_lm.tuner.datasets import CacheDataset, load_dataset
    from mlx_lm.utils import load_tokenizer

    try:
        tokenizer = load_tokenizer(directory)
        config = types.SimpleNamespace(data=str(data), train=True, test=False)
        config.mask_prompt = mask_prompt
        train = CacheDataset(load_dataset(config, tokenizer)[0])
    except Exception:  # the training's own load reports what is wrong with the data
        return None
    # Each item as training will see it: tokens, or (tokens, prompt length) with mask_prompt.
    items = (train[i] for i in range(len(train)))
    return max((len(item[0] if isinstance(item, tuple) else item) for item in items), default=None)
