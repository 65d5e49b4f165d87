"""The tiny chat model: the tiny model after a short, deterministic, offline pre-training.

pretrain_tiny_model() starts from labbench.tiny.tinymodel's random model and trains all of its
parameters on a built-in synthetic chat corpus: arithmetic, short code, concepts, chit-chat, and
requests to read, write or run something answered in prose that repeats the path or command
(copying practice). A share of the chats carry a tools header and are still answered in prose,
so the model sees tools but never a tool call: calling tools is what LoRA then teaches (the
learning demo). The loss weighs the assistant turns fully and the rest at PROMPT_LOSS_WEIGHT.

Copying a path or command token for token is what tool calls need, and it grew only after about
2,000 steps (~8 minutes here): 500-800 steps fitted the 3-minute budget but copied 2 of 24 paths,
and LoRA then taught made-up arguments. So the build takes ~12 minutes, and its output is
committed in models/tiny-chat (4 MB): users never wait for it. It runs with one BLAS thread and
is deterministic: `just tiny-model --chat --force` rebuilds the same bytes (checked on Linux
x86-64; another BLAS or CPU may differ in the last bits). Heavy imports (mlx, mlx_lm,
tokenizers) stay inside functions.
"""

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from labbench import PROJECT_ROOT
from labbench.tiny.chattemplate import DEFAULT_SYSTEM, SAMPLE_TOOLS, render_chat
from labbench.tiny.corpus import (
    DUMMY_WORDS,
    PRETRAIN_WORDS,
    action_clause,
    arithmetic,
    direct_question,
    purpose_slots,
    random_command,
    random_content,
    random_path,
    request_slots,
)
from labbench.tiny.tinymodel import build_atomically, build_lock, ensure_model, write_tiny_model
from labbench.tiny.tinytokenizer import PAD_TOKEN

CHAT_MODEL_DIR = PROJECT_ROOT / "models" / "tiny-chat"
RECIPE_FILE = "pretraining.json"  # the recipe and loss curve, written beside the weights

# --- defaults -----------------------------------------------------------------------------
CORPUS_CHATS = 12000  # synthetic chats generated; the steps below see part of them
TOOLS_HEADER_SHARE = 0.25
ACTION_SHARE = 0.36
ECHO_SHARE = 0.15  # chats that only say back a path, command or words (copying practice)
PACK_LEN = 256  # >0: chats are packed into rows of this many tokens (else length-bucketed)
STEPS = 3000  # optimizer steps (copying emerged only after ~2000: see the module docstring)
TOKENS_PER_BATCH = 1024  # batches are length-bucketed chats padded to about this many tokens
MAX_BATCH = 48  # at most this many chats in one batch
LEARNING_RATE = 3e-3  # AdamW peak; linear warm-up, then cosine decay to 10 %
WARMUP_STEPS = 20
WEIGHT_DECAY = 0.01
BETA2 = 0.95  # Adam's second-moment decay
PROMPT_LOSS_WEIGHT = 0.3  # loss weight of the tokens outside assistant turns (1.0 on answers)
MINUTES = 12  # what the one stderr line promises (measured 11-12 minutes on 2 CPU cores)


def ensure_chat_model(out_dir: Path = CHAT_MODEL_DIR) -> Path:
    """Build the tiny chat model if it is missing; concurrent callers wait for one build.

    The project ships models/tiny-chat built by this code, so this only builds elsewhere or
    after the shipped copy was deleted.
    """
    announce = (
        "pre-training the tiny chat model into {dir} (first use,"
        f" ~{MINUTES} minutes on 2 CPU cores)..."
    )
    return ensure_model(out_dir, _build_in_child, announce)


def pretrain_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Build (or rebuild) the chat model into out_dir atomically; returns out_dir."""
    out_dir = Path(out_dir)
    with build_lock(out_dir):
        _build_in_child(out_dir, seed)
    return out_dir


def _build_in_child(out_dir: Path, seed: int) -> None:
    """Build in a child process with OpenBLAS preloaded (~10x faster on Linux) and one BLAS
    thread: multi-threaded BLAS may sum in another order, and the bytes must not depend on it."""
    from labbench.machine.blas import openblas_env

    env = openblas_env() | {"OPENBLAS_NUM_THREADS": "1"}
    env["PYTHONPATH"] = ":".join(p for p in [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")] if p)
    code = "import sys; from pathlib import Path; from labbench.tiny.pretrain import build_here; "
    code += "build_here(Path(sys.argv[1]), int(sys.argv[2]))"
    done = subprocess.run([sys.executable, "-c", code, str(out_dir), str(seed)], env=env)
    if done.returncode != 0:
        from labbench.core.errors import UserError, describe_exit

        reason = describe_exit(done.returncode)
        raise UserError(f"pre-training the tiny chat model failed: the process {reason}")


def build_here(out_dir: Path, seed: int) -> None:
    """The build itself, in this process (_build_in_child runs it in a child)."""
    build_atomically(out_dir, lambda tmp: _pretrain(tmp, seed))


def _pretrain(model_dir: Path, seed: int) -> None:
    """The random tiny model, trained in place, with its recipe beside it."""
    write_tiny_model(model_dir, seed)
    recipe = _train(model_dir, seed)
    (model_dir / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")


# --- training -------------------------------------------------------------------------------


def _train(model_dir: Path, seed: int) -> dict:
    """Full-parameter training of the model in model_dir, in place; returns the recipe."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_lm.utils import load_model
    from tqdm import tqdm

    started = time.perf_counter()
    model, _ = load_model(model_dir)
    rows = tokenize_corpus(model_dir, pretrain_corpus(seed=seed))
    batches = (
        _packed(rows, random.Random(seed)) if PACK_LEN else _batches(rows, random.Random(seed))
    )
    pad_id = _token_id(model_dir, PAD_TOKEN)

    schedule = optim.join_schedules(
        [
            optim.linear_schedule(LEARNING_RATE / WARMUP_STEPS, LEARNING_RATE, WARMUP_STEPS),
            optim.cosine_decay(LEARNING_RATE, STEPS - WARMUP_STEPS, LEARNING_RATE * 0.1),
        ],
        [WARMUP_STEPS],
    )
    optimizer = optim.AdamW(learning_rate=schedule, betas=[0.9, BETA2], weight_decay=WEIGHT_DECAY)

    def loss_fn(model, inputs, targets, mask, real):
        losses = nn.losses.cross_entropy(model(inputs), targets)
        weights = mask + PROMPT_LOSS_WEIGHT * (real - mask)
        answer_loss = mx.stop_gradient((losses * mask).sum() / mask.sum())
        return (losses * weights).sum() / weights.sum(), answer_loss

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    losses = []
    progress = tqdm(range(STEPS), desc="pre-training", unit="step", file=sys.stderr)
    for step in progress:
        ids, mask, real = _pad(batches[step % len(batches)], pad_id)
        inputs, targets = mx.array(ids[:, :-1]), mx.array(ids[:, 1:])
        mask, real = mx.array(mask[:, 1:], mx.float32), mx.array(real[:, 1:], mx.float32)
        (_, loss), grads = loss_and_grad(model, inputs, targets, mask, real)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state, loss)
        losses.append(loss.item())
        if (step + 1) % 25 == 0:
            progress.set_postfix(answer_loss=f"{sum(losses[-25:]) / 25:.3f}")
    weights = {name: value for name, value in sorted(tree_flatten(model.parameters()))}
    mx.save_safetensors(str(model_dir / "model.safetensors"), weights, metadata={"format": "mlx"})  # ty: ignore[invalid-argument-type]
    del np  # imported for _pad's arrays; keeps the import cost inside this function
    every = max(1, STEPS // 10)
    return {
        "seed": seed,
        "steps": STEPS,
        "corpus_chats": CORPUS_CHATS,
        "tools_header_share": TOOLS_HEADER_SHARE,
        "tokens_per_batch": TOKENS_PER_BATCH,
        "learning_rate": LEARNING_RATE,
        "warmup_steps": WARMUP_STEPS,
        "weight_decay": WEIGHT_DECAY,
        "loss_every_10pct": [
            round(sum(losses[i : i + every]) / len(losses[i : i + every]), 4)
            for i in range(0, STEPS, every)
        ],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _token_id(model_dir: Path, token: str) -> int:
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    return next(t["id"] for t in tokenizer["added_tokens"] if t["content"] == token)


_ASSISTANT_TURN = re.compile(r"<\|im_start\|>assistant\n(.*?<\|im_end\|>)", re.DOTALL)


def tokenize_corpus(model_dir: Path, chats: list[tuple[list[dict], list | None]]):
    """(ids, mask) per chat: mask is 1 on the assistant turns' tokens and their <|im_end|>."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    texts = [render_chat(messages, tools=tools) for messages, tools in chats]
    rows = []
    for text, encoding in zip(texts, tokenizer.encode_batch(texts), strict=True):
        spans = [match.span(1) for match in _ASSISTANT_TURN.finditer(text)]
        mask = [int(any(a <= start < b for a, b in spans)) for start, _ in encoding.offsets]
        rows.append((encoding.ids, mask))
    return rows


def _batches(rows: list, rng: random.Random) -> list[list]:
    """Chats grouped by length into batches of about TOKENS_PER_BATCH tokens, shuffled."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][0]), i))
    batches, current = [], []
    for index in order:
        longest = len(rows[index][0])
        if current and (
            longest * (len(current) + 1) > TOKENS_PER_BATCH or len(current) == MAX_BATCH
        ):
            batches.append(current)
            current = []
        current.append(rows[index])
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def _packed(rows: list, rng: random.Random) -> list[list]:
    """Chats shuffled, concatenated and cut into rows of PACK_LEN tokens; batches of rows."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    ids = [token for i in order for token in rows[i][0]]
    mask = [weight for i in order for weight in rows[i][1]]
    per_batch = max(1, TOKENS_PER_BATCH // PACK_LEN)
    packed = [
        (ids[start : start + PACK_LEN], mask[start : start + PACK_LEN])
        for start in range(0, len(ids) - PACK_LEN + 1, PACK_LEN)
    ]
    return [packed[i : i + per_batch] for i in range(0, len(packed) - per_batch + 1, per_batch)]


def _pad(batch: list, pad_id: int):
    import numpy as np

    width = max(len(ids) for ids, _ in batch)
    ids = np.full((len(batch), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(batch), width), dtype=np.int32)
    real = np.zeros((len(batch), width), dtype=np.int32)
    for row, (tokens, weights) in enumerate(batch):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(weights)] = weights
        real[row, : len(tokens)] = 1
    return ids, mask, real


# --- corpus ---------------------------------------------------------------------------------

# None: the template's default system message.
_SYSTEMS = (None, DEFAULT_SYSTEM, *PRETRAIN_WORDS.systems)


def _tools_header(rng: random.Random) -> list[dict]:
    """Some of the sample tools, in random order, sometimes without parameter descriptions
    and trailing periods (both styles occur in the wild)."""
    tools = rng.sample(SAMPLE_TOOLS, rng.randint(1, len(SAMPLE_TOOLS)))
    plain = rng.random() < 0.5
    out = []
    for tool in tools:
        function = json.loads(json.dumps(tool["function"]))
        if plain:
            function["description"] = function["description"].rstrip(".")
            for prop in function["parameters"]["properties"].values():
                prop.pop("description", None)
        out.append({"type": "function", "function": function})
    return out


def pretrain_corpus(n: int = CORPUS_CHATS, seed: int = 0) -> list[tuple[list[dict], list | None]]:
    """(messages, tools or None) for n synthetic chats; never a tool call."""
    rng = random.Random(f"pretrain-{seed}")
    chats = []
    for _ in range(n):
        kind = rng.random()
        if kind < ACTION_SHARE:
            turns = [_action_turn(rng)]
        elif kind < ACTION_SHARE + ECHO_SHARE:
            turns = [_echo_turn(rng)]
        elif kind < 0.64:
            turns = [_math_turn(rng)] if rng.random() < 0.5 else [_code_turn(rng)]
        elif kind < 0.82:
            turns = [direct_question(rng)]
        else:
            turns = [rng.choice(DUMMY_WORDS.chitchat), _action_turn(rng)]
        messages = []
        system = rng.choice(_SYSTEMS)
        if system is not None:
            messages.append({"role": "system", "content": system})
        for user, answer in turns:
            messages += [
                {"role": "user", "content": user},
                {"role": "assistant", "content": answer},
            ]
        tools = _tools_header(rng) if rng.random() < TOOLS_HEADER_SHARE else None
        chats.append((messages, tools))
    return chats


def _action_turn(rng: random.Random) -> tuple[str, str]:
    """A request to read, run or write something (sometimes two things), answered in prose
    that names each kind of action and repeats its argument."""
    slots = request_slots(rng)
    slots |= purpose_slots(rng, slots["command"])
    if rng.random() < 0.2:
        ask, kinds = rng.choice(DUMMY_WORDS.multi)
    else:
        kind = rng.choices(["read", "run", "write"], weights=[0.4, 0.35, 0.25])[0]
        asks = {
            "read": PRETRAIN_WORDS.read_asks + DUMMY_WORDS.read,
            "run": PRETRAIN_WORDS.run_asks + DUMMY_WORDS.run,
            "write": PRETRAIN_WORDS.write_asks + DUMMY_WORDS.write,
        }
        ask, kinds = rng.choice(asks[kind]), (kind,)
    paths, commands = [slots["path"], slots["path2"]], [slots["command"], slots["command2"]]
    clauses = []
    for kind in kinds:
        quotes = rng.choice(PRETRAIN_WORDS.quotes)
        if kind == "run":
            clauses.append(action_clause(kind, commands.pop(0), quotes))
        elif kind == "read":
            clauses.append(action_clause(kind, paths.pop(0), quotes))
        else:
            clauses.append(action_clause(kind, paths.pop(0), quotes, slots["content"]))
    answer = ", then ".join(clauses) + rng.choice(PRETRAIN_WORDS.endings)
    if rng.random() < 0.5:
        preamble = rng.choice(PRETRAIN_WORDS.preambles)
        if not preamble.endswith((": ", ", ")):  # a new sentence starts after the preamble
            answer = answer[0].upper() + answer[1:]
        answer = preamble + answer
    return ask.format(**slots), answer[0].upper() + answer[1:]


def _echo_turn(rng: random.Random) -> tuple[str, str]:
    """Copying practice: say back a path, a command or a few words."""
    x = rng.choice([random_path(rng), random_command(rng), random_content(rng)])
    ask, answer = rng.choice(PRETRAIN_WORDS.echo)
    return ask.format(x=x), answer.format(x=x)


def _math_turn(rng: random.Random) -> tuple[str, str]:
    a, op, b, value = arithmetic(rng)
    ask = rng.choice(["What is {a} {op} {b}?", "Calculate {a} {op} {b}", "{a} {op} {b}?"])
    return ask.format(a=a, op=op, b=b), f"{a} {op} {b} = {value}"


def _code_turn(rng: random.Random) -> tuple[str, str]:
    task, code = rng.choice(PRETRAIN_WORDS.code_tasks)
    ask = rng.choice(PRETRAIN_WORDS.code_asks).format(task=task)
    return ask, f"Here it is:\n```python\n{code}```"
