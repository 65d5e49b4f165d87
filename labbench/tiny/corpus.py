"""The synthetic corpus: word banks, and the requests and answers made from them.

The word banks live in corpus.toml beside this module, one table per corpus: the tiny model's
tokenizer corpus (TOKENIZER_WORDS), the dummy chat data (DUMMY_WORDS) and the tiny chat model's
pre-training chats (PRETRAIN_WORDS). The makers below turn DUMMY_WORDS into paths, commands,
file contents, direct questions and the prose that names an action; dummy data and pre-training
both use them. Every maker draws from the rng it is given, in a fixed order: the same seed gives
the same text, and the shipped models and datasets depend on that order.
"""

import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomli is installed on 3.10 only: a type check in a 3.11 venv cannot find it
    import tomli as tomllib  # ty: ignore[import-not-found]

CORPUS_FILE = Path(__file__).with_name("corpus.toml")

# A tool-call answer first says what it does ("Reading \"src/app.py\".") in these words, as
# the pre-trained tiny model answers such requests in prose (labbench.tiny.pretrain).
ACTION_WORDS = {"read": "reading", "run": "running", "write": "writing"}

Pair = tuple[str, str]


@dataclass(frozen=True)
class TokenizerWords:
    """The tiny model's BPE training corpus (labbench.tiny.tinytokenizer)."""

    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    other_words: tuple[str, ...]
    dirs: tuple[str, ...]
    exts: tuple[str, ...]
    commands: tuple[str, ...]
    chitchat: tuple[Pair, ...]

    @cached_property
    def words(self) -> tuple[str, ...]:
        """Every word a sentence may hold."""
        return self.nouns + self.verbs + self.other_words


@dataclass(frozen=True)
class DummyWords:
    """The dummy chat data (labbench.data.dummydata); pre-training draws from it too."""

    dirs: tuple[str, ...]
    stems: tuple[str, ...]
    exts: tuple[str, ...]
    root_files: tuple[str, ...]
    commands: tuple[str, ...]
    grep_words: tuple[str, ...]
    contents: tuple[str, ...]
    read: tuple[str, ...]
    run: tuple[str, ...]
    write: tuple[str, ...]
    multi: tuple[tuple[str, tuple[str, ...]], ...]
    concepts: tuple[Pair, ...]
    concept_questions: tuple[str, ...]
    command_questions: tuple[str, ...]
    howto: tuple[Pair, ...]
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...]
    chitchat: tuple[Pair, ...]
    purposes: Mapping[str, tuple[str, ...]]
    command_answers: Mapping[str, str]


@dataclass(frozen=True)
class PretrainWords:
    """The tiny chat model's pre-training chats (labbench.tiny.pretrain)."""

    systems: tuple[str, ...]
    endings: tuple[str, ...]
    preambles: tuple[str, ...]
    quotes: tuple[Pair, ...]
    echo: tuple[Pair, ...]
    read_asks: tuple[str, ...]
    run_asks: tuple[str, ...]
    write_asks: tuple[str, ...]
    code_tasks: tuple[Pair, ...]
    code_asks: tuple[str, ...]


def _frozen(value):
    """TOML arrays as tuples and tables as read-only mappings, all the way down, so no caller
    can change a shared word bank."""
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    return value


def _read_word_banks() -> Mapping:
    """corpus.toml's tables; a bank missing or unknown to its dataclass fails at import."""
    with CORPUS_FILE.open("rb") as file:
        return _frozen(tomllib.load(file))


_BANKS = _read_word_banks()
TOKENIZER_WORDS = TokenizerWords(**_BANKS["tokenizer"])
DUMMY_WORDS = DummyWords(**_BANKS["dummy"])
PRETRAIN_WORDS = PretrainWords(**_BANKS["pretrain"])

# File stems beyond DUMMY_WORDS.stems: the tiny tokenizer's own words, minus the directory
# names, so paths are mostly whole tokens of the tiny model.
MORE_STEMS = tuple(
    sorted(set(TOKENIZER_WORDS.nouns + TOKENIZER_WORDS.verbs) - set(DUMMY_WORDS.dirs))
)


def arithmetic(rng: random.Random, ops: str = "+-*") -> tuple[int, str, int, int]:
    """(a, op, b, a op b) with a below 1000 and b below 100; op one of ops."""
    a, b = rng.randint(0, 999), rng.randint(0, 99)
    values = {"+": a + b, "-": a - b, "*": a * b}
    op, value = rng.choice([(op, values[op]) for op in ops])
    return a, op, b, value


def file_stem(rng: random.Random) -> str:
    """A file stem: often one of many words, so a model must copy it rather than guess it."""
    return rng.choice(DUMMY_WORDS.stems) if rng.random() < 0.5 else rng.choice(MORE_STEMS)


def random_path(rng: random.Random) -> str:
    if rng.random() < 0.12:
        return rng.choice(DUMMY_WORDS.root_files)
    stem = file_stem(rng)
    if rng.random() < 0.3:
        stem = f"{stem}_{file_stem(rng)}"
    ext = rng.choice(DUMMY_WORDS.exts)
    if ext == ".py" and rng.random() < 0.25:
        stem = "test_" + stem
    name = stem + ext
    return name if rng.random() < 0.25 else f"{rng.choice(DUMMY_WORDS.dirs)}/{name}"


def random_py_path(rng: random.Random) -> str:
    path = random_path(rng)
    return path if path.endswith(".py") else path.rsplit(".", 1)[0].rsplit("/", 1)[-1] + ".py"


def random_command(rng: random.Random) -> str:
    stem = rng.choice(DUMMY_WORDS.stems)
    return rng.choice(DUMMY_WORDS.commands).format(
        tests=f"tests/test_{stem}.py",
        stem=stem,
        py=random_py_path(rng),
        dir=rng.choice(DUMMY_WORDS.dirs),
        path=random_path(rng),
        word=rng.choice(DUMMY_WORDS.grep_words),
    )


def random_content(rng: random.Random) -> str:
    stem, stem2 = rng.sample(DUMMY_WORDS.stems, 2)
    return rng.choice(DUMMY_WORDS.contents).format(
        stem=stem, stem2=stem2, number=rng.randint(0, 99), a=rng.randint(1, 9), b=rng.randint(1, 9)
    )


def request_slots(rng: random.Random) -> dict[str, str]:
    """{path}, {path2}, {command}, {command2} and {content} for a request template."""
    return {
        "path": random_path(rng),
        "path2": random_path(rng),
        "command": random_command(rng),
        "command2": random_command(rng),
        "content": random_content(rng),
    }


def purpose_slots(rng: random.Random, command: str) -> dict[str, str]:
    """{purpose} and {purpose_lower} for a request template: why one would run the command."""
    purpose = rng.choice(DUMMY_WORDS.purposes[command.split()[0]])
    return {"purpose": purpose, "purpose_lower": purpose[0].lower() + purpose[1:]}


def action_clause(kind: str, target: str, quotes=('"', '"'), content: str | None = None) -> str:
    """What an answer says it does: 'reading "src/app.py"', 'writing "x = 1" to "a.py"'."""
    left, right = quotes
    what = f"{left}{target}{right}"
    if content is not None:
        what = f"{left}{content}{right} to {what}"
    return f"{ACTION_WORDS[kind]} {what}"


def direct_question(rng: random.Random) -> Pair:
    """A question needing no tool, and its prose answer."""
    words = DUMMY_WORDS
    topic = rng.random()
    if topic < 0.35:
        subject, answer = rng.choice(words.concepts)
        user = rng.choice(words.concept_questions).format(x=subject)
    elif topic < 0.6:
        command = random_command(rng)
        user = rng.choice(words.command_questions).format(command=command)
        answer = f"`{command}`: {words.command_answers[command.split()[0]]}"
    elif topic < 0.8:
        a, op, b, value = arithmetic(rng, "+-")
        user = rng.choice(["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?"])
        user = user.format(a=a, op=op, b=b)
        answer = f"{a} {op} {b} = {value}"
    elif topic < 0.92:
        user, answer = rng.choice(words.howto)
    else:
        user, answer = rng.choice(words.chitchat)
    return user, answer
