"""Sweep files are validated before anything runs: one line naming the file and the key."""

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import load_script, run_main

from labbench import cli
from labbench.errors import UserError
from labbench.sweep import label_of, lora_settings
from labbench.sweepfile import load_sweep

GOOD = """
data = "data"
suite = "baseline"
seeds = [0, 1]
[train]
iters = 20
[grid]
learning_rate = [1e-4, 3e-4]
rank = [8, 16]
"""


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "s.toml"
    path.write_text(text)
    return path


def test_a_good_sweep_has_every_combination_and_maps_to_the_trainer(folder):
    sweep = load_sweep(write(folder, GOOD))
    assert sweep.data == (folder / "data").resolve() and sweep.seeds == (0, 1)
    configurations = sweep.configurations()
    assert [label_of(c) for c in configurations] == [
        "learning_rate=0.0001, rank=8",
        "learning_rate=0.0001, rank=16",
        "learning_rate=0.0003, rank=8",
        "learning_rate=0.0003, rank=16",
    ]
    settings = lora_settings(sweep, configurations[3], seed=1)
    assert (settings.learning_rate, settings.rank, settings.iters, settings.seed) == (
        3e-4,
        16,
        20,
        1,
    )
    assert settings.steps_per_report == 10  # never more than iters


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("rank = [8, 16]", "rnak = [8, 16]"), "grid.rnak: unknown option (known: iters, "),
        (("rank = [8, 16]", "rank = [8, 0]"), "grid.rank: must be a whole number of at least 1"),
        (("rank = [8, 16]", "rank = [8, 8]"), "grid.rank: has a value twice"),
        (("rank = [8, 16]", "rank = []"), "grid.rank: must be a non-empty list of values"),
        (("rank = [8, 16]", "rank = 8"), "grid.rank: must be a non-empty list of values"),
        (("iters = 20", "iters = 2.5"), "train.iters: must be a whole number of at least 1"),
        (("iters = 20", "rank = 4"), "grid.rank: is fixed in [train] too"),
        (("iters = 20", "seed = 4"), "train.seed: unknown option"),
        (("learning_rate = [1e-4, 3e-4]", "learning_rate = [-1.0]"), "grid.learning_rate: must"),
        (("seeds = [0, 1]", "seeds = [0, 0]"), "seeds: has a seed twice"),
        (("seeds = [0, 1]", ""), "seeds: missing"),
        (("seeds = [0, 1]", "seeds = [0]\nseed = 3"), "seed: unknown key"),
        (('data = "data"', 'data = "nowhere"'), "data: no such directory"),
        (('data = "data"', ""), "data: missing"),
        (("[grid]", "[eval]\nmax_tokens = 0\n[grid]"), "eval.max_tokens: must be a whole number"),
        (("[grid]", "[eval]\ntop_p = 0.9\n[grid]"), "eval.top_p: unknown option"),
    ],
)
def test_a_bad_sweep_is_one_line_naming_file_and_key(folder, change, message):
    path = write(folder, GOOD.replace(*change))
    with pytest.raises(UserError) as raised:
        load_sweep(path)
    text = str(raised.value)
    assert text.startswith(f"{path}: {message}"), text
    assert "\n" not in text


def test_bad_toml_and_a_missing_file_name_the_file(folder):
    with pytest.raises(UserError, match=r"s\.toml: bad TOML"):
        load_sweep(write(folder, "seeds = [0,"))
    with pytest.raises(UserError, match="no such sweep file"):
        load_sweep(folder / "missing.toml")


def test_train_seeds_is_a_sweep_of_exactly_the_train_settings(folder):
    train = load_script("train")
    words = ["data=data", "seeds=0,2", "iters=30", "rank=4", "learning_rate=3e-4", "layers=2"]
    args = cli.parse_args(train.build_parser(), words)
    settings = train.settings_from(args)
    sweep = train.seeds_sweep(args, folder / "data", settings)
    assert sweep.seeds == (0, 2) and sweep.grid == {} and sweep.suite == "baseline"
    assert sweep.configurations() == [{}] and label_of({}) == "fixed settings"
    assert lora_settings(sweep, {}, seed=2) == replace(settings, seed=2)


@pytest.mark.parametrize("seeds", ["0,x", "1,1", "-1"])
def test_train_refuses_bad_seeds_before_anything_runs(folder, seeds):
    result = run_main("train", f"data={folder / 'data'}", f"seeds={seeds}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: --seeds {seeds}: give "), result.stderr
