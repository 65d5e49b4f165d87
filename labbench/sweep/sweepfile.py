"""A sweep is a TOML file: a base model, dataset and eval suite, fixed training settings, a grid
of values for any training option, and the training seeds. Validated completely before anything
runs; every problem is one line naming the file and the key. A configuration's label and trainer
settings (`label_of`, `lora_settings`) and the sweep as a run records it (`describe`) are here too.

    model = "models/tiny-chat"      # a directory (relative to this file) or a hub id
    data = "../data/dummy"          # dataset directory, relative to this file
    suite = "baseline"              # a suite name or a .toml path (relative to this file)
    seeds = [0, 1, 2]

    [train]                         # fixed training settings (LoraSettings names)
    iters = 200
    warmup = 20

    [grid]                          # one trial per combination, per seed
    learning_rate = [1e-4, 3e-4]
    rank = [8, 16]

    [eval]                          # how each adapter (and the base model) is evaluated
    max_tokens = 64
"""

import itertools
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from labbench.core.errors import UserError
from labbench.core.settings import DPO_LOSS_TYPES, METHODS, REWARDS, LoraSettings
from labbench.eval.suite import tomllib
from labbench.eval.suitetypes import Suite

TOP_KEYS = ("model", "data", "suite", "seeds", "train", "grid", "eval", "name", "description")
EVAL_KEYS = ("max_tokens", "temperature", "seed", "epochs")
# Training options a sweep may fix or vary; the seed is varied by `seeds`, and `data` may be a
# grid axis too (a list of dataset directories).
TRAIN_KEYS = tuple(f.name for f in fields(LoraSettings) if f.name != "seed")
POSITIVE_INTS = {
    "iters",
    "batch_size",
    "rank",
    "save_every",
    "steps_per_report",
    "max_seq_length",
    "group_size",
    "max_completion_length",
}
NON_NEGATIVE_INTS = {"warmup", "steps_per_eval"}
POSITIVE_FLOATS = {"learning_rate", "scale", "beta"}
CHOICES = {"method": METHODS, "loss_type": DPO_LOSS_TYPES}


@dataclass(frozen=True)
class Sweep:
    path: Path
    name: str
    model: str | None  # as written: resolved later (a directory or a hub id)
    data: Path | None  # the fixed dataset, unless `data` is a grid axis
    suite: str
    seeds: tuple[int, ...]
    fixed: dict[str, Any]  # training settings every trial shares
    grid: dict[str, tuple]  # axis -> values, in file order
    eval: dict[str, Any] = field(default_factory=dict)

    def configurations(self) -> list[dict[str, Any]]:
        """Every combination of grid values, in file order ([{}] without a grid)."""
        axes = list(self.grid)
        return [dict(zip(axes, values, strict=True)) for values in itertools.product(
            *(self.grid[axis] for axis in axes)
        )]  # fmt: skip


def _fail(path: Path, key: str, problem: str) -> UserError:
    return UserError(f"{path}: {key}: {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_train_value(path: Path, key: str, name: str, value: Any) -> Any:
    """One training option's value, checked against LoraSettings' type; returns it as used."""
    if name in POSITIVE_INTS or name in NON_NEGATIVE_INTS or name == "val_batches":
        least = 1 if name in POSITIVE_INTS else (-1 if name == "val_batches" else 0)
        if not _is_int(value) or value < least:
            raise _fail(path, key, f"must be a whole number of at least {least}, got {value!r}")
        return value
    if name == "num_layers":
        if not _is_int(value) or value < 1:
            raise _fail(path, key, f"must be a whole number of at least 1, got {value!r}")
        return value
    if name in POSITIVE_FLOATS or name == "dropout":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, key, f"must be a number, got {value!r}")
        if name in POSITIVE_FLOATS and not value > 0:
            raise _fail(path, key, f"must be positive, got {value!r}")
        if name == "dropout" and not 0 <= value < 1:
            raise _fail(path, key, f"must be from 0 up to 1, got {value!r}")
        return float(value)
    if name in CHOICES:
        if value not in CHOICES[name]:
            raise _fail(path, key, f"must be one of {', '.join(CHOICES[name])}, got {value!r}")
        return value
    if name == "temperature":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise _fail(path, key, f"must be a number of at least 0, got {value!r}")
        return float(value)
    if name == "rewards":
        if not isinstance(value, list) or not value or any(r not in REWARDS for r in value):
            raise _fail(path, key, f"must be a list of {', '.join(REWARDS)}, got {value!r}")
        return tuple(value)
    if name == "reward_weights":
        numbers = isinstance(value, list) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in value
        )
        if not numbers or not value:
            raise _fail(path, key, f"must be a list of numbers, got {value!r}")
        return tuple(float(w) for w in value)
    if name in ("mask_prompt", "grad_checkpoint"):
        if not isinstance(value, bool):
            raise _fail(path, key, f"must be true or false, got {value!r}")
        return value
    if name == "keys":
        if not isinstance(value, list) or not value or not all(isinstance(k, str) for k in value):
            raise _fail(path, key, f"must be a list of module names, got {value!r}")
        return tuple(value)
    if name == "data":
        if not isinstance(value, str) or not value:
            raise _fail(path, key, f"must be a dataset directory, got {value!r}")
        directory = (path.parent / value).resolve()
        if not directory.is_dir():
            raise _fail(path, key, f"no such directory {directory}")
        return directory
    raise _fail(path, key, f"unknown option (known: {', '.join((*TRAIN_KEYS, 'data'))})")


def _check_eval(path: Path, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _fail(path, "eval", "must be a table")
    checked = {}
    for name, value in table.items():
        key = f"eval.{name}"
        if name not in EVAL_KEYS:
            raise _fail(path, key, f"unknown option (known: {', '.join(EVAL_KEYS)})")
        if name == "temperature":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise _fail(path, key, f"must be a number of at least 0, got {value!r}")
            value = float(value)
        elif not _is_int(value) or value < (0 if name == "seed" else 1):
            least = 0 if name == "seed" else 1
            raise _fail(path, key, f"must be a whole number of at least {least}, got {value!r}")
        checked[name] = value
    return checked


def _check_seeds(path: Path, seeds: Any) -> tuple[int, ...]:
    if not isinstance(seeds, list) or not seeds:
        raise _fail(path, "seeds", "must be a non-empty list of whole numbers, e.g. [0, 1, 2]")
    for seed in seeds:
        if not _is_int(seed) or seed < 0:
            raise _fail(path, "seeds", f"must be whole numbers of at least 0, got {seed!r}")
    if len(set(seeds)) != len(seeds):
        raise _fail(path, "seeds", f"has a seed twice: {seeds}")
    return tuple(seeds)


def parse_sweep(path: Path, data: dict[str, Any]) -> Sweep:
    """A Sweep from the TOML's contents; raises UserError naming `path` and the key."""
    for key in data:
        if key not in TOP_KEYS:
            raise _fail(path, key, f"unknown key (known: {', '.join(TOP_KEYS)})")
    for key in ("train", "grid"):
        if not isinstance(data.get(key, {}), dict):
            raise _fail(path, key, "must be a table")
    train, grid = data.get("train", {}), data.get("grid", {})
    if "data" in train:
        raise _fail(path, "train.data", "the dataset goes at the top: data = ...")
    fixed = {
        name: check_train_value(path, f"train.{name}", name, value) for name, value in train.items()
    }
    axes: dict[str, tuple] = {}
    for name, values in grid.items():
        key = f"grid.{name}"
        if name in fixed:
            raise _fail(path, key, f"is fixed in [train] too; keep one of train.{name} and {key}")
        if name == "data" and "data" in data:
            raise _fail(path, key, "is given at the top too; keep one of data and grid.data")
        if not isinstance(values, list) or not values:
            raise _fail(path, key, "must be a non-empty list of values")
        checked = tuple(check_train_value(path, key, name, value) for value in values)
        if len(set(checked)) != len(checked):
            raise _fail(path, key, f"has a value twice: {values}")
        axes[name] = checked
    if "data" not in data and "data" not in axes:
        raise _fail(path, "data", "missing: the dataset directory to train on")
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise _fail(path, "model", f"must be a model directory or hub id, got {model!r}")
    if model is not None and (model.startswith(".") or (path.parent / model).exists()):
        model = str((path.parent / model).resolve())
    suite = data.get("suite", "baseline")
    if not isinstance(suite, str) or not suite:
        raise _fail(path, "suite", f"must be a suite name or .toml path, got {suite!r}")
    if suite.endswith(".toml"):
        suite = str((path.parent / suite).resolve())
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise _fail(path, "name", f"must be a string, got {name!r}")
    data_dir = check_train_value(path, "data", "data", data["data"]) if "data" in data else None
    if "seeds" not in data:
        raise _fail(path, "seeds", "missing: the training seeds, e.g. seeds = [0, 1, 2]")
    return Sweep(
        path=path,
        name=name,
        model=model,
        data=data_dir,
        suite=suite,
        seeds=_check_seeds(path, data["seeds"]),
        fixed=fixed,
        grid=axes,
        eval=_check_eval(path, data.get("eval", {})),
    )


def load_sweep(path: Path) -> Sweep:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise UserError(f"{path}: no such sweep file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: bad TOML: {error}") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror or error}") from None
    return parse_sweep(path, data)


def option_values(sweep: Sweep, name: str) -> list[tuple[str, Any]]:
    """(key, value) for every value the file gives a training option (or data): at the top,
    in [train] and in [grid]."""
    found: list[tuple[str, Any]] = []
    if name == "data" and sweep.data is not None:
        found.append(("data", sweep.data))
    if name in sweep.fixed:
        found.append((f"train.{name}", sweep.fixed[name]))
    return found + [(f"grid.{name}", value) for value in sweep.grid.get(name, ())]


@contextmanager
def naming(path: Path, key: str) -> Generator[None, None, None]:
    """A UserError raised inside names the sweep file and the key."""
    try:
        yield
    except UserError as error:
        raise _fail(path, key, str(error)) from None


def checked_inputs(sweep: Sweep) -> tuple[Suite, str]:
    """The sweep's suite and resolved model, once all that can be checked before the first
    trial has been: the suite, the model, every dataset (the check `just train` makes) and
    num_layers against the model's config.json. Each problem names the file and the key. A
    dataset must suit every method the sweep trains."""
    from labbench.data.datacheck import require_trainable
    from labbench.eval.suite import load_suite
    from labbench.serving.server import resolve_model
    from labbench.train.trainercheck import config_layers, too_many_layers

    with naming(sweep.path, "suite"):
        suite = load_suite(sweep.suite)
    model = resolve_model(sweep.model, named=f"{sweep.path}: model:")
    methods = {value for _, value in option_values(sweep, "method")} or {"sft"}
    for key, directory in option_values(sweep, "data"):
        for method in sorted(methods):
            with naming(sweep.path, key):
                require_trainable(directory, method=method)
    layers = config_layers(model)
    for key, value in option_values(sweep, "num_layers"):
        problem = too_many_layers(value, layers)
        if problem:
            raise _fail(sweep.path, key, problem)
    return suite, model


NO_GRID = "fixed settings"  # the label of the one configuration of a sweep without a grid


def value_text(value: Any) -> str:
    if isinstance(value, Path):
        return value.name
    if isinstance(value, tuple):
        return ",".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def label_of(configuration: dict[str, Any]) -> str:
    return ", ".join(f"{k}={value_text(v)}" for k, v in configuration.items()) or NO_GRID


def lora_settings(sweep: Sweep, configuration: dict[str, Any], seed: int) -> LoraSettings:
    """The trainer's settings for one trial: the fixed settings, the grid values and the seed."""
    values = {**sweep.fixed, **configuration}
    values.pop("data", None)
    settings = LoraSettings(**values, seed=seed)
    return replace(settings, steps_per_report=min(settings.steps_per_report, settings.iters))


def describe(sweep: Sweep) -> dict[str, Any]:
    """The sweep as recorded in its run's config (paths as strings)."""
    return {
        "file": str(sweep.path),
        "name": sweep.name,
        "suite": sweep.suite,
        "data": str(sweep.data) if sweep.data else None,
        "seeds": list(sweep.seeds),
        "fixed": {k: list(v) if isinstance(v, tuple) else v for k, v in sweep.fixed.items()},
        "grid": {
            k: [value_text(v) if isinstance(v, Path) else v for v in values]
            for k, values in sweep.grid.items()
        },  # fmt: skip
        "eval": sweep.eval,
        "configurations": len(sweep.configurations()),
    }
