"""Which prompts cannot fit a model's context: each request's messages and tools counted with
the model's own tokenizer and chat template (as mlx_lm.server applies them), plus the tokens
it may generate (max_tokens), against the model's context length from its config.json.

Only for a model we can see (a local directory, or a hub id in the cache): the tokenizer and
config of a server given by --url are unknown.
"""

import json
from collections.abc import Sequence
from pathlib import Path

# config.json keys that hold the context length, the usual first (text_config: multimodal).
CONTEXT_KEYS = ("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions")


def context_length(directory: Path) -> int | None:
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for table in (config, config.get("text_config") or {}):
        for key in CONTEXT_KEYS:
            if isinstance(table.get(key), int) and table[key] > 0:
                return table[key]
    return None


# Every token of a byte-level or byte-fallback tokenizer stands for at least one byte of text,
# so a rendered prompt has at most as many tokens as bytes; the margin covers a prefix token a
# SentencePiece tokenizer may add.
BYTES_BOUND_MARGIN = 16


def prompt_lengths(
    directory: Path, requests: Sequence[tuple[list[dict], list[dict], int]], context: int
) -> list[int | None]:
    """For each (messages, tools, max_tokens) request: its prompt tokens with the generation
    prompt, as the server builds it, when they may not fit `context` with max_tokens; None
    when its text is so short that it surely fits (then it is not tokenized at all)."""
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(directory)
    lengths: list[int | None] = []
    for messages, tools, max_tokens in requests:
        text = tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, tokenize=False
        )
        if len(text.encode()) + BYTES_BOUND_MARGIN + max_tokens <= context:
            lengths.append(None)
        else:
            lengths.append(len(tokenizer.encode(text, add_special_tokens=False, verbose=False)))
    return lengths
