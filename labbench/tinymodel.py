"""The project's own tiny model, built offline in a few seconds: the default model everywhere.

A real mlx-lm architecture (Qwen2, random fp32 weights) with a real byte-level BPE tokenizer
trained here on a small synthetic corpus of coding chats, and a Qwen2.5-style chat template
with tools, so mlx_lm.server parses `<tool_call>` output into OpenAI `tool_calls`. The same
seed gives byte-identical files. Heavy imports (mlx, mlx_lm, tokenizers) stay inside functions.
"""

import fcntl
import functools
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path

from labbench import PROJECT_ROOT
from labbench.errors import UserError

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
# Tokenizer: byte-level BPE like Qwen2; VOCAB_SIZE counts the added tokens too.
VOCAB_SIZE = 1536  # also the embedding rows
CORPUS_SEED = 0  # the corpus, hence the tokenizer, is the same for every model seed
CORPUS_CONVERSATIONS = 3000  # synthetic chats the BPE is trained on
DEFAULT_SYSTEM = "You are a helpful coding assistant."

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
TOOL_TOKENS += ["<tools>", "</tools>"]
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# The files of a built model; the build is atomic, so their presence means "ready".
MODEL_FILES = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
]

# Qwen2's pre-tokenizer split: words with their leading space, single digits, punctuation runs.
# It must stay exactly Qwen2's: transformers 5 loads a qwen2 model's tokenizer as Qwen2Tokenizer,
# which ignores the pre-tokenizer in tokenizer.json and rebuilds this one.
PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2.5's template with a shorter tools instruction (every header token costs training
# time). mlx_lm picks the json_tools parser because it holds "<tool_call>" and
# "tool_call.name". Tool-call arguments may be a dict (rendered with tojson) or a JSON string.
CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content }}
    {%- else %}
        {{- 'DEFAULT_SYSTEM' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions."
        + " Their signatures are within <tools></tools>:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each call, return a json object within <tool_call></tool_call> tags:"
        + "\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}"
        + "\n</tool_call><|im_end|>\n" }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nDEFAULT_SYSTEM<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first)
        or (message.role == 'assistant' and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + (message.content or '') + '<|im_end|>\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + (message.content or '') + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
""".replace("DEFAULT_SYSTEM", DEFAULT_SYSTEM)


def _tool(name: str, description: str, **params: str) -> dict:
    """An OpenAI-style function tool whose parameters are all required strings."""
    properties = {key: {"type": "string", "description": text} for key, text in params.items()}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(params)},
        },
    }


# Tools of the kind the suites offer; the corpus renders them so their JSON becomes cheap.
SAMPLE_TOOLS = [
    _tool("read_file", "Read a text file.", path="Path of the file."),
    _tool(
        "write_file",
        "Write text to a file.",
        path="Path of the file.",
        content="The text to write.",
    ),
    _tool("run_command", "Run a shell command.", command="The command line."),
    _tool("list_files", "List the files in a directory.", path="Path of the directory."),
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
    with _build_lock(out_dir):
        _build(out_dir, seed)
    return out_dir


def ensure_model(out_dir: Path, build: Callable[[Path, int], None], announce: str) -> Path:
    """Run build(out_dir, seed 0) if out_dir holds no model yet, saying `announce` (its {dir}
    is the directory) first; concurrent callers wait for one build."""
    out_dir = Path(out_dir)
    if is_tiny_model_ready(out_dir):
        return out_dir
    with _build_lock(out_dir):
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
def _build_lock(out_dir: Path) -> Generator[None]:
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


# --- tokenizer ------------------------------------------------------------------------------


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


# --- corpus ---------------------------------------------------------------------------------

# Words of coding chats; they make paths, identifiers and sentences, so the BPE learns them whole.
_NOUNS = """
app api auth bug cache cli client code column config core count data db debug dict dir docs
error event file flag format function handler header helper id image index input item job key
line list log loop main map math message method model module name node number option order
output package page parser path plugin port query queue record request response result route
row rule schema score script server session setting size source state status step store string
suite table task test text time token tool type user utils value version view word worker
""".split()
_VERBS = """
add build call check clean close compute convert copy count create delete fetch filter find fix
format get group handle load make merge move open parse print read remove rename render reset
run save scan search send set sort split start stop sum test update validate write
""".split()
_WORDS = (
    _NOUNS
    + _VERBS
    + """
a an the this that these it its is are was be been has have had do does not no yes and or but if
then else when while for with without from to into of on in at by as so than about after before
all any each every some one two three first last next new old empty missing wrong right small
large fast slow simple safe correct invalid valid default optional required public private local
remote same other because should would could can will must may please thanks sure here there now
again also only just still already why how what which where who you your we our they I me my
explain show tell help want need try use see look know think mean seems works fails failed passes
returns raises changed updated instead example problem question answer reason issue change
""".split()
)
_DIRS = ["src", "tests", "lib", "app", "scripts", "docs", "src/utils", "src/api", "labbench"]
_EXTS = [".py", ".py", ".py", ".md", ".txt", ".json", ".toml", ".js", ".yaml", ".cfg", ".sh"]
_COMMANDS = [
    "pytest",
    "pytest -q",
    "pytest -x tests/",
    "python -m pytest -k {name}",
    "python {path}",
    "ls -la",
    "ls {dir}",
    "git status",
    "git diff",
    "git log --oneline -5",
    "cat {path}",
    "grep -rn TODO {dir}",
    "ruff check .",
    "ruff format {path}",
    "make test",
    "npm test",
    "pip install -r requirements.txt",
    "wc -l {path}",
    "head -n 20 {path}",
    "echo $HOME",
    "mkdir -p {dir}",
    "python -c 'print(1 + 2)'",
]
_CHITCHAT = [
    ("Hello!", "Hello! How can I help with your code today?"),
    ("Thanks, that worked.", "Great, glad it works now."),
    ("What can you do?", "I can read and write files, run commands and explain code."),
    ("Who are you?", "I am a small coding assistant."),
    ("Good morning", "Good morning! What are we working on?"),
]


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


def render_chat(messages: list[dict], tools: list[dict] | None = None, **kwargs) -> str:
    """Render CHAT_TEMPLATE the way transformers does (tojson without escaping or sorting)."""
    return _compiled_template().render(messages=messages, tools=tools, **kwargs)


@functools.cache
def _compiled_template():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env.from_string(CHAT_TEMPLATE)


def _sentence(rng: random.Random, low: int = 4, high: int = 12) -> str:
    words = rng.choices(_WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!", ":"])


def _identifier(rng: random.Random) -> str:
    return (
        f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}" if rng.random() < 0.7 else rng.choice(_NOUNS)
    )


def _path(rng: random.Random) -> str:
    name = rng.choice([rng.choice(_NOUNS), _identifier(rng)]) + rng.choice(_EXTS)
    if name.endswith(".py") and rng.random() < 0.3:
        name = "test_" + name
    return name if rng.random() < 0.2 else f"{rng.choice(_DIRS)}/{name}"


def _command(rng: random.Random) -> str:
    template = rng.choice(_COMMANDS)
    return template.format(name=_identifier(rng), path=_path(rng), dir=rng.choice(_DIRS))


def _code(rng: random.Random) -> str:
    name, a, b = _identifier(rng), *rng.sample(_NOUNS, 2)
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
    path, command, directory = _path(rng), _command(rng), rng.choice(_DIRS)
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
    ask, answer = rng.choice(_CHITCHAT)
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
    a, b = rng.randint(0, 999), rng.randint(0, 99)
    op, value = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
    return [
        {"role": "user", "content": f"What is {a} {op} {b}?"},
        {"role": "assistant", "content": f"{a} {op} {b} = {value}"},
    ]
