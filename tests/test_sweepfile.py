"""Sweep files are validated before anything runs: one line naming the file and the key."""

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import load_script, run_main

from labbench import PROJECT_ROOT
from labbench.core import cli
from labbench.core.errors import UserError
from labbench.sweep.sweepfile import checked_inputs, label_of, load_sweep, lora_settings
from labbench.train.trainercheck import config_layers

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


TINY_CHAT = PROJECT_ROOT / "models" / "tiny-chat"  # 4 blocks, by its config.json
EXAMPLE = (
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hi"}]}'
)


def checkable(folder: Path, top: dict[str, str], tables: str = "") -> Path:
    """A sweep file of the tiny chat model on the baseline suite, changed by `top` values."""
    values = {"model": f'"{TINY_CHAT}"', "suite": '"baseline"', "seeds": "[0]", **top}
    return write(folder, "".join(f"{k} = {v}\n" for k, v in values.items()) + tables)


def dataset(folder: Path, name: str, train: str = EXAMPLE) -> Path:
    directory = folder / name
    directory.mkdir()
    (directory / "train.jsonl").write_text(train + "\n")
    (directory / "valid.jsonl").write_text(EXAMPLE + "\n")
    return directory


@pytest.fixture
def datasets(tmp_path) -> Path:
    dataset(tmp_path, "good")
    dataset(tmp_path, "badjson", "not json")
    dataset(tmp_path, "empty", EXAMPLE.replace('"content": "hi"}]', '"content": " "}]'))
    return tmp_path


@pytest.mark.parametrize(
    ("top", "tables", "message"),
    [
        (
            {},
            '[grid]\ndata = ["good", "badjson"]',
            "grid.data: DIR/badjson/train.jsonl:1: bad JSON",
        ),
        ({"data": '"empty"'}, "", "data: DIR/empty/train.jsonl:1: message 2: empty content"),
        ({"data": '"good"'}, "[grid]\nnum_layers = [2, 100]", "grid.num_layers: 100: the model"),
        (
            {"data": '"good"'},
            "[train]\nnum_layers = 5",
            "train.num_layers: 5: the model has only 4",
        ),
        ({"data": '"good"', "model": '"./nowhere"'}, "", "model: DIR/nowhere: no such directory"),
        ({"data": '"good"', "suite": '"nosuite"'}, "", "suite: no suite 'nosuite': no such file"),
    ],
)
def test_what_a_trial_would_fail_on_is_named_by_file_and_key_before_anything_runs(
    datasets, top, tables, message
):
    path = checkable(datasets, top, tables)
    with pytest.raises(UserError) as raised:
        checked_inputs(load_sweep(path))
    text = str(raised.value)
    assert text.startswith(f"{path}: {message.replace('DIR', str(datasets))}"), text
    assert "\n" not in text


def test_a_checkable_sweep_passes_with_its_suite_and_model(datasets):
    path = checkable(datasets, {}, '[grid]\ndata = ["good"]\nnum_layers = [1, 4]')
    suite, model = checked_inputs(load_sweep(path))
    assert (suite.name, model) == ("baseline", str(TINY_CHAT))


def test_a_sweep_that_fails_its_checks_writes_no_ledger(datasets, isolated_ledger):
    path = checkable(datasets, {}, '[grid]\ndata = ["good", "badjson"]')
    result = run_main("sweep", str(path))
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {path}: grid.data: {datasets}/badjson/train.jsonl:1: bad JSON:"
        " Expecting value (column 1)\n"
    )
    assert not isolated_ledger.exists()


def test_pending_refuses_a_missing_ledger_and_does_not_create_it(datasets, isolated_ledger):
    path = checkable(datasets, {"data": '"good"'})
    result = run_main("sweep", str(path), "--pending")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: no ledger at {isolated_ledger} "), result.stderr
    assert not isolated_ledger.exists()
    from labbench.record.ledger import open_ledger

    open_ledger(isolated_ledger).close()
    result = run_main("sweep", str(path), "--pending")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "1 of 1 trials left to train"


def test_num_layers_is_read_from_config_json_and_unknown_for_a_hub_id_not_cached(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert config_layers(str(TINY_CHAT)) == 4
    assert config_layers("mlx-community/never-downloaded") is None
    snapshot = tmp_path / "hub" / "models--org--cached" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    (snapshot / "config.json").write_text('{"text_config": {"num_hidden_layers": 7}}')
    assert config_layers("org/cached") == 7  # a multimodal model's language part


def test_train_refuses_seed_with_seeds(tmp_path, isolated_ledger):
    data = dataset(tmp_path, "good")
    result = run_main("train", f"data={data}", "seeds=1", "seed=2", "iters=4")
    assert (result.returncode, result.stderr) == (1, "error: --seed 2 and --seeds 1: give one\n")
    assert not isolated_ledger.exists()


@pytest.mark.parametrize("seeds", [[], ["seeds=0,1"]])
def test_train_refuses_too_many_layers_before_the_run_starts(tmp_path, isolated_ledger, seeds):
    data = dataset(tmp_path, "good")
    result = run_main("train", f"model={TINY_CHAT}", f"data={data}", "num_layers=100", *seeds)
    assert result.returncode == 1
    assert result.stderr == "error: --num-layers 100: the model has only 4 layers\n"
    assert not isolated_ledger.exists()
