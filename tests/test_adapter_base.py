"""An adapter runs on its own base model: eval, serve, checkpoint evals and sweeps (issue 19.1).

The fast tests use a hand-made adapter directory (an adapter_config.json: the base check never
reads the weights) and refuse before any server starts; the slow one trains a real adapter of
tiny-chat and evaluates it through real servers.
"""

import json
import shutil
import socket
from pathlib import Path

import pytest
from helpers import run_main, run_script, small_suite_toml
from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.data.dummydata import write_dummy_data
from labbench.eval.adapterbase import base_from_ledger_file, base_of_adapter, same_model
from labbench.eval.evaluation import EvalPlan, record_eval
from labbench.eval.suite import load_suite
from labbench.record.ledger import finish_run, open_ledger, start_run

TINY_CHAT = PROJECT_ROOT / "models" / "tiny-chat"


def adapter_of(tmp_path: Path, model: str | None, name: str = "adapter") -> Path:
    """An adapter directory whose adapter_config.json names `model` (mlx-lm writes --model as
    typed), without weights."""
    adapter = tmp_path / name
    adapter.mkdir()
    config = {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": {"rank": 8}}
    if model is not None:
        config["model"] = model
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    (adapter / "adapters.safetensors").write_bytes(b"")
    return adapter


def test_the_base_is_the_training_runs_model_else_the_adapter_config(tmp_path, isolated_ledger):
    adapter = adapter_of(tmp_path, "models/tiny-chat")  # relative, as mlx-lm's lora writes it
    found = base_of_adapter(str(adapter), None)
    assert (found.model, found.source) == (str(TINY_CHAT), "its adapter_config.json")

    db = open_ledger(isolated_ledger)
    run = start_run(db, "train", {}, model="/somewhere/else/model", adapter=str(adapter))
    finish_run(run, "ok")
    for where in (adapter, adapter / "checkpoints" / "0000050"):  # a checkpoint is its adapter's
        found = base_from_ledger_file(str(where), isolated_ledger)
        assert (found.model, found.source) == ("/somewhere/else/model", f"training run {run.id}")
    assert base_of_adapter(str(adapter_of(tmp_path, None, "bare")), None).model is None


def test_one_model_however_it_is_written(tmp_path, tiny_model):
    link = tmp_path / "link"
    link.symlink_to(TINY_CHAT)
    copy = tmp_path / "copy"
    shutil.copytree(TINY_CHAT, copy)
    assert same_model(str(TINY_CHAT), str(PROJECT_ROOT / "models" / "." / "tiny-chat"))
    assert same_model(str(TINY_CHAT), str(link))
    assert same_model(str(TINY_CHAT), str(copy))  # the same files: the same model
    assert not same_model(str(TINY_CHAT), str(tiny_model))  # the same architecture, other weights
    assert same_model("mlx-community/Qwen2.5-0.5B", "mlx-community/Qwen2.5-0.5B")
    assert not same_model("mlx-community/Qwen2.5-0.5B-4bit", "mlx-community/Qwen2.5-0.5B-8bit")


def test_another_model_is_refused_in_one_line_before_the_ledger_is_opened(
    tmp_path, tiny_model, isolated_ledger
):
    adapter = adapter_of(tmp_path, str(TINY_CHAT))
    for script in ("eval", "serve"):
        result = run_main(script, f"adapter={adapter}", f"model={tiny_model}")
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: --adapter {adapter} was trained on models/tiny-chat")
        assert "not on --model models/tiny:" in line and "allow_other_base=true" in line
    # Training on from an adapter takes no override: the line offers none.
    pairs = tmp_path / "pairs"
    write_dummy_data(pairs, 6, seed=0, kind="dpo")
    result = run_main(
        "train", "method=dpo", f"data={pairs}", f"adapter={adapter}", f"model={tiny_model}"
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line == (
        f"error: --adapter {adapter} was trained on models/tiny-chat (its adapter_config.json),"
        " not on --model models/tiny: leave model= out to use its base"
    )
    assert not isolated_ledger.exists()


def test_an_adapter_without_a_base_needs_a_model(tmp_path, isolated_ledger):
    adapter = adapter_of(tmp_path, None)
    result = run_main("eval", f"adapter={adapter}")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: --adapter {adapter}: its base model is unknown (no training run in the ledger,"
        ' no "model" in adapter_config.json): pass model=...'
    )
    assert not isolated_ledger.exists()


def test_checkpoint_and_sweep_evals_are_held_to_the_same_rule(tmp_path, tiny_model):
    """record_eval itself refuses another model (what training's checkpoint evals, sweeps and
    fuse's verification call), before any run is recorded."""
    db = open_ledger(tmp_path / "ledger.db")
    adapter = adapter_of(tmp_path, str(tiny_model))  # the config says tiny ...
    train = start_run(db, "train", {}, model=str(TINY_CHAT), adapter=str(adapter))
    finish_run(train, "ok")  # ... but the ledger's training run, which wins, says tiny-chat
    suite_file = tmp_path / "small.toml"
    suite_file.write_text(small_suite_toml(4))
    plan = EvalPlan(suite=load_suite(str(suite_file)), model=str(tiny_model), adapter=str(adapter))
    with pytest.raises(UserError, match="was trained on models/tiny-chat"):
        record_eval(db, plan)
    assert db.table("runs").count_where("kind = 'eval'") == 0


@pytest.mark.slow("LoRA training and a tiny-model server per eval")
@pytest.mark.timeout(600)
def test_an_adapter_of_tiny_chat_runs_on_tiny_chat_unless_told_otherwise(
    tmp_path, tiny_model, isolated_ledger
):
    data = tmp_path / "data"
    assert run_script("dummy_data", f"out={data}", "n=24").returncode == 0
    trained = run_script(
        "train", f"model={TINY_CHAT}", f"data={data}", "iters=2", "save_every=2", "batch_size=2"
    )
    assert trained.returncode == 0, trained.stderr
    adapter = isolated_ledger.parent / "adapters" / "1"
    suite = tmp_path / "small.toml"
    suite.write_text(small_suite_toml(4))

    own = run_script("eval", f"adapter={adapter}", f"suite={suite}")
    assert own.returncode == 0, own.stderr
    refused = run_script("eval", f"adapter={adapter}", f"suite={suite}", f"model={tiny_model}")
    assert refused.returncode == 1
    assert "was trained on models/tiny-chat (training run 1)" in refused.stderr
    other = run_script(
        "eval", f"adapter={adapter}", f"suite={suite}", f"model={tiny_model}",
        "allow_other_base=true",
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert "warning: " in other.stderr and "evaluated on models/tiny as asked" in other.stderr

    db = Database(isolated_ledger)
    evals = list(db.query("SELECT * FROM runs WHERE kind = 'eval' ORDER BY id"))
    assert [(run["model"], run["status"]) for run in evals] == [
        (str(TINY_CHAT), "ok"),
        (str(tiny_model), "ok"),
    ]  # the refused eval recorded nothing
    configs = [json.loads(run["config"]) for run in evals]
    assert [config["adapter_base"] for config in configs] == [str(TINY_CHAT)] * 2
    assert [config.get("base_mismatch") for config in configs] == [None, True]
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    assert "adapters/1 (⚠ trained on tiny-chat)" in journal
    assert "**⚠ Base model mismatch:** the adapter was trained on tiny-chat" in journal


def test_refused_at_the_door_a_taken_port_and_an_adapter_without_weights(tmp_path, isolated_ledger):
    """Issue 19.3: what can be checked before a run starts is refused before the ledger is
    opened, so no failed run, journal entry or report is left behind."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_main("eval", f"port={port}", f"model={TINY_CHAT}")
    assert (result.returncode, result.stderr) == (
        1,
        f"error: --port {port} on 127.0.0.1 is already in use\n",
    )
    adapter = adapter_of(tmp_path, str(TINY_CHAT))
    (adapter / "adapters.safetensors").unlink()
    result = run_main("eval", f"adapter={adapter}")
    assert (result.returncode, result.stderr) == (
        1,
        f"error: --adapter {adapter}: no adapters.safetensors in {adapter}"
        " (a training that has not saved one yet?)\n",
    )
    assert not isolated_ledger.exists()
