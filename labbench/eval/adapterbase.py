"""Which model an adapter belongs on, and whether a given model is that one.

An adapter scored on another model of the same architecture (the instruct model and its base,
the 4-bit and the 8-bit version of one model) gives plausible, wrong numbers without a word.
So an adapter's base model is the model: the one its training run in the ledger used, else the
`model` its adapter_config.json names (labbench and mlx-lm's `lora` both write it). Another
model is refused unless the user says so (`allow_other_base`), and then the run records both.

"The same model" is decided on what the server would load: the same directory (however it is
written: `models/tiny`, `./models/tiny`, a symlink), a copy with the same files (weights,
config, tokenizer), a hub id and its snapshot in the Hugging Face cache, or the same hub id.
"""

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.record.fingerprint import MODEL_FILE_SUFFIXES, directory_sha256, hub_snapshot

ALLOW_FLAG = "allow_other_base=true"  # how the override is spelled in messages
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapters.safetensors"  # the only file name mlx-lm loads an adapter from

# The training run that wrote an adapter directory, or the checkpoint directory inside it.
_TRAINING_OF = (
    "SELECT id, model FROM runs WHERE kind = 'train' AND adapter IS NOT NULL AND model IS NOT NULL"
    " AND (:adapter = adapter OR :adapter LIKE adapter || '/%') ORDER BY id DESC LIMIT 1"
)


@dataclass(frozen=True)
class AdapterBase:
    """An adapter's base model (None: unknown) and where that was read: `training run 7` or
    `its adapter_config.json`."""

    model: str | None
    source: str


def base_of_adapter(adapter: str, ledger: sqlite3.Connection | None) -> AdapterBase:
    """The base model of an adapter directory (an absolute path): its training run's model in
    the ledger, else the `model` of its adapter_config.json, made absolute when it names a
    directory (mlx-lm writes `--model` as typed)."""
    if ledger is not None:
        try:
            row = ledger.execute(_TRAINING_OF, {"adapter": adapter}).fetchone()
        except sqlite3.Error:  # a new ledger without tables yet
            row = None
        if row is not None:
            return AdapterBase(row[1], f"training run {row[0]}")
    source = f"its {ADAPTER_CONFIG}"
    try:
        config = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError):
        return AdapterBase(None, source)
    named = config.get("model") if isinstance(config, dict) else None
    if not isinstance(named, str) or not named:
        return AdapterBase(None, source)
    return AdapterBase(_as_written_dir(named, Path(adapter)), source)


def _as_written_dir(model: str, adapter_dir: Path) -> str:
    """A model as an adapter_config.json names it: an absolute path when it is a directory
    (relative ones from where training most likely ran: the project, or the adapter's parent's
    parent), else as written (a hub id)."""
    path = Path(model).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [PROJECT_ROOT / path, adapter_dir.parent.parent / path]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return str(candidate.resolve())
    return model


def base_from_ledger_file(adapter: str, ledger_path: Path) -> AdapterBase:
    """base_of_adapter, reading the ledger file (if there is one) without writing to it: the
    check runs before a script opens the ledger to record."""
    if not ledger_path.is_file():
        return base_of_adapter(adapter, None)
    try:
        connection = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    except sqlite3.Error:
        return base_of_adapter(adapter, None)
    with closing(connection):
        return base_of_adapter(adapter, connection)


def _model_files(model: str) -> Path | None:
    path = Path(model)
    return path if path.is_dir() else hub_snapshot(model)


def same_model(a: str, b: str) -> bool:
    """Whether models `a` and `b` (resolved: absolute directories or hub ids) are one model."""
    if a == b:
        return True
    files_a, files_b = _model_files(a), _model_files(b)
    if files_a is None or files_b is None:
        return False  # a hub id not downloaded, or a directory that is gone: only names tell
    if files_a.resolve() == files_b.resolve():
        return True
    suffixes = MODEL_FILE_SUFFIXES
    return directory_sha256(files_a, None, suffixes) == directory_sha256(files_b, None, suffixes)


def model_name(model: str) -> str:
    """A model as messages name it: a directory inside the project relative to it."""
    path = Path(model)
    if path.is_absolute() and path.is_relative_to(PROJECT_ROOT):
        return path.relative_to(PROJECT_ROOT).as_posix()
    return model


@dataclass(frozen=True)
class BaseCheck:
    """The model an adapter is evaluated or served on, against its base."""

    model: str  # what runs: the given model, else the adapter's base
    adapter: str  # the adapter directory, absolute
    base: AdapterBase
    mismatch: bool  # the model is not the adapter's base (allowed by the user)

    def config(self) -> dict:
        """What a run records beside its model: the adapter's base, and any mismatch."""
        found = {"adapter_base": self.base.model, "adapter_base_source": self.base.source}
        return found | ({"base_mismatch": True} if self.mismatch else {})

    def warning(self, adapter: str, doing: str = "evaluated") -> str | None:
        """A line for stderr when the model is not (or may not be) the adapter's base."""
        if self.base.model is None:
            return f"note: {adapter} names no base model; {doing} on {model_name(self.model)}"
        if not self.mismatch:
            return None
        return (
            f"warning: {adapter} was trained on {model_name(str(self.base.model))}, and is"
            f" {doing} on {model_name(self.model)} as asked ({ALLOW_FLAG})"
        )


def check_base(
    model: str | None,
    adapter: str,
    base: AdapterBase,
    allow_other_base: bool,
    adapter_arg: str | None = None,
    overridable: bool = True,
) -> BaseCheck:
    """The model to run `adapter` on. No model given: the adapter's base (as a directory or hub
    id, failing clearly when it is gone). A given model (resolved) that is not the base:
    refused in one line naming both, unless `allow_other_base` (the line offers it when the
    caller takes it: `overridable`)."""
    from labbench.serving.server import resolve_model

    named = adapter_arg or adapter
    if model is None:
        if base.model is None:
            raise UserError(
                f"--adapter {named}: its base model is unknown (no training run in the ledger,"
                f' no "model" in {ADAPTER_CONFIG}): pass model=...'
            )
        from labbench.tiny.tinymodel import TINY_MODEL_DIR

        origin = f"--adapter {named}: its base model (from {base.source})"
        # The built-in tiny model is built on first use, as it is without an adapter.
        default = base.model == str(TINY_MODEL_DIR)
        resolved = resolve_model(None if default else base.model, named=origin)
        return BaseCheck(resolved, adapter, base, mismatch=False)
    if base.model is None or same_model(model, base.model):
        return BaseCheck(model, adapter, base, mismatch=False)
    if not allow_other_base:
        override = f", or pass {ALLOW_FLAG} to run it on this model anyway" if overridable else ""
        raise UserError(
            f"--adapter {named} was trained on {model_name(base.model)} ({base.source}), not on"
            f" --model {model_name(model)}: leave model= out to use its base{override}"
        )
    return BaseCheck(model, adapter, base, mismatch=True)


def model_for_adapter(
    model_arg: str | None,
    adapter_arg: str | None,
    allow_other_base: bool,
    ledger_arg: str | None,
    overridable: bool = True,
) -> tuple[str, "BaseCheck | None"]:
    """What a script runs, checked before its ledger is opened: --model (default tiny) alone,
    or an adapter on its base model (see check_base; a script without --allow-other-base passes
    overridable=False). Returns the model and the check."""
    from labbench.core.cli import ledger_path
    from labbench.serving.server import check_adapter, resolve_model

    adapter = check_adapter(adapter_arg)
    if adapter is not None and not (Path(adapter) / ADAPTER_WEIGHTS).is_file():
        # Else the server would fail to load it once a run was recorded.
        raise UserError(
            f"--adapter {adapter_arg}: no {ADAPTER_WEIGHTS} in {adapter}"
            " (a training that has not saved one yet?)"
        )
    if adapter is None:
        if allow_other_base:
            raise UserError("--allow-other-base goes with --adapter")
        return resolve_model(model_arg), None
    model = resolve_model(model_arg) if model_arg is not None else None
    base = base_from_ledger_file(adapter, ledger_path(ledger_arg))
    check = check_base(model, adapter, base, allow_other_base, adapter_arg, overridable)
    return check.model, check
