"""One name per option everywhere (issue 19.6): mlx-lm's names, the same in `just train`, sweep
files and `just bench`; old spellings work for a release with a one-line note; the README and
the justfile name only options that each recipe's --help shows."""

import re
from pathlib import Path

import pytest
from helpers import load_script, run_main

from labbench import PROJECT_ROOT
from labbench.data.dummydata import write_dummy_data
from labbench.sweep.sweepfile import TRAIN_KEYS

TINY_CHAT = PROJECT_ROOT / "models" / "tiny-chat"
# Recipes whose words go to another program (pytest), or that take none.
NOT_OURS = {"test", "test-fast", "lint", "default"}


def recipe_scripts() -> dict[str, Path]:
    """Recipe name -> the script it runs, read from the justfile."""
    text = (PROJECT_ROOT / "justfile").read_text()
    found = re.findall(r"^([a-z-]+) \*args:\n\s+@exec \"\{\{python\}\}\" (\S+\.py)", text, re.M)
    return {recipe: PROJECT_ROOT / script for recipe, script in found}


def shown_options(script: Path) -> set[str]:
    """The --flags a script's --help lists (old spellings are hidden)."""
    module = load_script(script.stem) if script.parent.name == "scripts" else None
    if module is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location(f"bench_{script.stem}", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    parser = module.build_parser()
    return {
        option
        for action in parser._actions
        if action.help != "==SUPPRESS=="
        for option in action.option_strings
    }


def commands_in(text: str) -> list[str]:
    """Every `just RECIPE ...` a reader is shown: in `code`, and on lines of code blocks."""
    inline = re.findall(r"`(just [a-z][^`]*)`", text)
    blocks = [line.strip() for line in text.splitlines() if line.strip().startswith("just ")]
    return inline + blocks


def options_in(command: str) -> list[str]:
    """The options a command uses: make-style words (`key=`) and flags (`--key`), as flags."""
    words = re.findall(r"(?:^|[\s\[])([a-z][a-z0-9_]*)=", command)
    flags = re.findall(r"(?:^|[\s\[])(--[a-z][a-z0-9-]*)", command)
    return ["--" + word.replace("_", "-") for word in words] + flags


@pytest.mark.parametrize("document", ["README.md", "justfile"])
def test_the_docs_name_only_options_the_recipes_help_shows(document):
    scripts = recipe_scripts()
    assert {"eval", "train", "bench", "sweep", "fuse", "bench-blas"} <= scripts.keys()
    wrong = []
    commands = commands_in((PROJECT_ROOT / document).read_text())
    assert commands
    for command in commands:
        recipe = command.split()[1]
        if recipe in NOT_OURS:
            continue
        assert recipe in scripts, f"{document}: {command!r}: no recipe {recipe!r}"
        shown = shown_options(scripts[recipe])
        wrong += [f"{command!r}: {opt}" for opt in options_in(command) if opt not in shown]
    assert wrong == []


def test_train_takes_every_training_option_a_sweep_file_takes_by_the_same_name():
    shown = shown_options(PROJECT_ROOT / "scripts" / "train.py")
    assert [key for key in TRAIN_KEYS if "--" + key.replace("_", "-") not in shown] == []
    bench = shown_options(PROJECT_ROOT / "scripts" / "bench.py")
    assert {"--batch-size", "--num-layers", "--untimed-iters"} <= bench
    assert "--warmup" not in bench  # warmup is the learning rate's, in train and sweeps


@pytest.mark.parametrize(
    ("script", "old", "new"),
    [
        ("train", "layers=100", "num_layers="),
        ("bench", "layers=100", "num_layers="),
    ],
)
def test_an_old_spelling_works_for_a_release_with_a_one_line_note(
    script, old, new, tmp_path, isolated_ledger
):
    data = tmp_path / "data"
    write_dummy_data(data, 8, seed=0)
    result = run_main(script, f"model={TINY_CHAT}", f"data={data}", old)
    note, error = result.stderr.strip().splitlines()
    assert note == (
        f"note: {old.split('=')[0]}= is now {new} (the old name is accepted until the next release)"
    )
    assert error.startswith("error: --num-layers 100: the model has only 4 layers")
    assert result.returncode == 1 and not isolated_ledger.exists()


def test_old_spellings_reach_the_new_options():
    bench = load_script("bench").build_parser
    train = load_script("train").build_parser
    from labbench.core.cli import parse_args

    args = parse_args(bench(), ["warmup=3", "batch=2", "layers=1"])
    assert (args.untimed_iters, args.batch_size, args.num_layers) == (3, 2, 1)
    args = parse_args(train(), ["--no-mask-prompt", "layers=2", "dropout=0.1"])
    assert (args.mask_prompt, args.num_layers, args.dropout) == (False, 2, 0.1)
    assert parse_args(train(), ["mask_prompt=false"]).mask_prompt is False
    assert parse_args(train(), []).mask_prompt is True
