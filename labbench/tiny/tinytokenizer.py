"""The tiny model's tokenizer: a byte-level BPE like Qwen2's, trained on a synthetic corpus.

synthetic_corpus() is short coding chats (from corpus.TOKENIZER_WORDS) rendered through the chat
template, and code snippets; the same seed gives the same corpus, hence the same tokenizer.
The tokenizers library is imported only when a tokenizer is trained.
"""

import random
import re

from labbench.tiny.chattemplate import DEFAULT_SYSTEM, SAMPLE_TOOLS, render_chat
from labbench.tiny.corpus import TOKENIZER_WORDS as WORDS
from labbench.tiny.corpus import arithmetic

# Tokenizer: byte-level BPE like Qwen2; VOCAB_SIZE counts the added tokens too.
VOCAB_SIZE = 1536  # also the embedding rows
CORPUS_SEED = 0  # the corpus, hence the tokenizer, is the same for every model seed
CORPUS_CONVERSATIONS = 3000  # synthetic chats the BPE is trained on

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
TOOL_TOKENS += ["<tools>", "</tools>"]
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# Qwen2's pre-tokenizer split: words with their leading space, single digits, punctuation runs.
# It must stay exactly Qwen2's: transformers 5 loads a qwen2 model's tokenizer as Qwen2Tokenizer,
# which ignores the pre-tokenizer in tokenizer.json and rebuilds this one.
PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_tokenizer():
    """Train the byte-level BPE on the synthetic corpus; added tokens get the last ids."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tokenizer = Tokenizer(models.BPE(byte_fallback=False, fuse_unk=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    added = SPECIAL_TOKENS + TOOL_TOKENS
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(added),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # The added tokens are cut out of the training text so no merges are spent on their pieces.
    splitter = re.compile("|".join(re.escape(token) for token in added))
    texts = (piece for text in synthetic_corpus() for piece in splitter.split(text) if piece)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    return tokenizer


# --- corpus ---------------------------------------------------------------------------------


def synthetic_corpus(n: int = CORPUS_CONVERSATIONS, seed: int = CORPUS_SEED) -> list[str]:
    """Short coding chats rendered through the chat template, a quarter of them with tools."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            messages, tools = _tool_chat(rng), rng.sample(SAMPLE_TOOLS, rng.randint(1, 4))
        else:
            messages, tools = [_plain_chat, _code_chat, _math_chat][kind - 1](rng), None
        if rng.random() < 0.3:
            messages.insert(0, {"role": "system", "content": DEFAULT_SYSTEM})
        texts.append(render_chat(messages, tools=tools))
        texts.append(_code(rng))
    return texts


def _sentence(rng: random.Random, low: int = 4, high: int = 12) -> str:
    words = rng.choices(WORDS.words, k=rng.randint(low, high))
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!", ":"])


def _identifier(rng: random.Random) -> str:
    return (
        f"{rng.choice(WORDS.verbs)}_{rng.choice(WORDS.nouns)}"
        if rng.random() < 0.7
        else rng.choice(WORDS.nouns)
    )


def _path(rng: random.Random) -> str:
    name = rng.choice([rng.choice(WORDS.nouns), _identifier(rng)]) + rng.choice(WORDS.exts)
    if name.endswith(".py") and rng.random() < 0.3:
        name = "test_" + name
    return name if rng.random() < 0.2 else f"{rng.choice(WORDS.dirs)}/{name}"


def _command(rng: random.Random) -> str:
    template = rng.choice(WORDS.commands)
    return template.format(name=_identifier(rng), path=_path(rng), dir=rng.choice(WORDS.dirs))


def _code(rng: random.Random) -> str:
    name, a, b = _identifier(rng), *rng.sample(WORDS.nouns, 2)
    op = rng.choice(["+", "-", "*", "//", "%", "==", "<", ">="])
    number = rng.randint(0, 100)
    cls = "".join(part.title() for part in _identifier(rng).split("_"))
    comment = _sentence(rng, 3, 8)
    snippets = [
        f"def {name}({a}, {b}):\n    # {comment}\n    return {a} {op} {b}\n",
        f"def {name}({a}):\n    result = []\n    for item in {a}:\n        if item > {number}:\n"
        f"            result.append(item)\n    return result\n",
        f'class {cls}:\n    """{comment}"""\n\n    def __init__(self, {a}):\n'
        f"        self.{a} = {a}\n\n    def __repr__(self):\n"
        f'        return f"{{type(self).__name__}}({{self.{a}!r}})"\n',
        f"import json\nfrom pathlib import Path\n\n\ndef {name}(path):\n"
        f"    with open(path) as f:\n        return json.load(f)\n",
        f"def test_{name}():\n    assert {name}({number}, 2) == {number + 2}\n",
        f'if __name__ == "__main__":\n    print({name}({a}={number}))\n',
        f"{a} = [i * i for i in range({number})]\nprint(sum({a}))\n",
        f"try:\n    {a} = int({b})\nexcept ValueError as e:\n    raise SystemExit(str(e))\n",
        f"$ {_command(rng)}\n{_sentence(rng)}\n",
    ]
    return rng.choice(snippets)


def _tool_chat(rng: random.Random) -> list[dict]:
    path, command, directory = _path(rng), _command(rng), rng.choice(WORDS.dirs)
    code, sentence = _code(rng), _sentence(rng)
    name, args, ask, result = rng.choice(
        [
            ("read_file", {"path": path}, f"Read {path}.", code),
            ("read_file", {"path": path}, f"What is in {path}?", code),
            ("run_command", {"command": command}, f"Run {command}", "3 passed in 0.12s"),
            ("run_command", {"command": command}, f"Please run `{command}`.", sentence),
            ("list_files", {"path": directory}, f"List {directory}", f"{path}\n{_path(rng)}"),
            ("write_file", {"path": path, "content": code}, f"Save this to {path}", "ok"),
        ]
    )
    call = {"type": "function", "function": {"name": name, "arguments": args}}
    return [
        {"role": "user", "content": ask},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": result},
        {"role": "assistant", "content": _sentence(rng)},
    ]


def _plain_chat(rng: random.Random) -> list[dict]:
    ask, answer = rng.choice(WORDS.chitchat)
    command, path = _command(rng), _path(rng)
    ask2, answer2 = rng.choice(
        [
            (f"What does `{command}` do?", f"`{command}` is a shell command. {_sentence(rng)}"),
            (f"Where is {path}?", f"It is at {path} in the project."),
            (f"How do I run the tests for {path}?", f"Run `pytest {path}` from the repo root."),
            (f"Can you fix the bug in {path}?", f"Sure. Let me look at {path} first."),
            (_sentence(rng), _sentence(rng) + " " + _sentence(rng)),
        ]
    )
    return [
        {"role": "user", "content": ask},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": ask2},
        {"role": "assistant", "content": answer2},
    ]


def _code_chat(rng: random.Random) -> list[dict]:
    code = _code(rng)
    ask = rng.choice(["Write a small Python function.", "Show me some Python code.", "Example?"])
    return [
        {"role": "user", "content": ask},
        {"role": "assistant", "content": f"Here it is:\n```python\n{code}```\n{_sentence(rng)}"},
    ]


def _math_chat(rng: random.Random) -> list[dict]:
    a, op, b, value = arithmetic(rng)
    return [
        {"role": "user", "content": f"What is {a} {op} {b}?"},
        {"role": "assistant", "content": f"{a} {op} {b} = {value}"},
    ]
