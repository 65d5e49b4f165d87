"""Preference and RL training end to end on the tiny model: real mlx-lm-lora trainers, real
checkpoint evals through a real server. Each test starts `scripts/train.py` (and through it
mlx_lm.server) and needs the tiny model."""

import json
from pathlib import Path

import pytest
from helpers import interrupt_training, run_script, small_suite_toml
from sqlite_utils import Database

from labbench.data.dummydata import write_dummy_data

PREFERENCE = "mlx-lm-lora preference training and a tiny-model server per checkpoint eval"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data") / "dpo"
    write_dummy_data(data, 20, seed=0, kind="dpo")
    return data


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data") / "grpo"
    write_dummy_data(data, 10, seed=0, kind="grpo")
    return data


def metrics(db: Database, run_id: int, split: str) -> set[str]:
    rows = db.query(
        "SELECT name FROM train_metrics WHERE run_id = ? AND split = ?", [run_id, split]
    )
    return {row["name"] for row in rows}


@pytest.mark.slow(PREFERENCE)
@pytest.mark.timeout(900)
def test_dpo_then_grpo_from_its_adapter_end_to_end(
    tiny_model, pairs, prompts, isolated_ledger, tmp_path
):
    suite = tmp_path / "small.toml"
    suite.write_text(small_suite_toml(max_tokens=16))
    result = run_script(
        "train", "method=dpo", f"data={pairs}", "iters=4", "save_every=2", "batch_size=2",
        "steps_per_report=2", "steps_per_eval=2", "val_batches=1", "beta=0.2",
        f"eval_suite={suite}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    db = Database(isolated_ledger)
    dpo = db.table("runs").get(1)
    config = json.loads(dpo["config"])
    assert dpo["status"] == "ok" and config["method"] == "dpo" and config["beta"] == 0.2
    assert config["loss_type"] == "sigmoid" and "group_size" not in config
    losses = list(db.query("SELECT iteration, split FROM train_reports WHERE run_id = 1"))
    assert {(r["iteration"], r["split"]) for r in losses} >= {
        (2, "train"),
        (4, "train"),
        (4, "val"),
    }
    assert {"accuracies", "margins", "chosen_reward", "rejected_reward"} <= metrics(db, 1, "train")
    assert {"accuracies", "margins"} <= metrics(db, 1, "val")
    adapter = isolated_ledger.parent / "adapters" / "1"
    # An adapter, not mlx-lm-lora's default fused model, and every checkpoint evaluated.
    assert sorted(p.name for p in adapter.iterdir()) == [
        "adapter_config.json", "adapters.safetensors", "checkpoints"
    ]  # fmt: skip
    checkpoints = list(db.query("SELECT * FROM checkpoints WHERE run_id = 1 ORDER BY iteration"))
    assert [c["iteration"] for c in checkpoints] == [2, 4]
    assert all(c["eval_run_id"] and c["score"] is not None for c in checkpoints)
    assert sum(c["best"] for c in checkpoints) == 1

    result = run_script(
        "train", "method=grpo", f"data={prompts}", f"adapter={adapter}", "iters=2", "save_every=2",
        "batch_size=2", "group_size=2", "max_completion_length=12", "steps_per_report=1",
        "rewards=score,format", "reward_weights=1,0.5", f"eval_suite={suite}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [grpo] = list(db.query("SELECT * FROM runs WHERE kind = 'train' AND id != 1"))
    config = json.loads(grpo["config"])
    assert config["method"] == "grpo" and config["rewards"] == ["score", "format"]
    assert config["reward_weights"] == [1.0, 0.5] and config["group_size"] == 2
    assert config["start_run_id"] == 1 and config["start_adapter"] == str(adapter)
    rollouts = list(db.query("SELECT * FROM rollouts WHERE run_id = ?", [grpo["id"]]))
    assert len(rollouts) == 2 * 2 * 2  # steps x prompts x group
    steps = list(
        db.query(
            "SELECT iteration, name, value FROM train_metrics WHERE run_id = ? AND split = 'step'",
            [grpo["id"]],
        )
    )
    for step in (1, 2):
        scores = [r["score"] for r in rollouts if r["step"] == step]
        [mean] = [
            s["value"] for s in steps if s["iteration"] == step and s["name"] == "reward_score"
        ]
        assert mean == pytest.approx(sum(scores) / len(scores))
    assert {"score_mean", "format_mean", "kl", "total_rewards_mean"} <= metrics(
        db, grpo["id"], "train"
    )
    [checkpoint] = list(db.query("SELECT * FROM checkpoints WHERE run_id = ?", [grpo["id"]]))
    assert checkpoint["eval_run_id"] and checkpoint["best"] == 1
    # The new adapter keeps the starting adapter's LoRA shape, so eval and fuse load it as one.
    grpo_config = json.loads((Path(grpo["adapter"]) / "adapter_config.json").read_text())
    dpo_config = json.loads((adapter / "adapter_config.json").read_text())
    assert grpo_config == dpo_config


@pytest.mark.timeout(120)
def test_training_on_the_eval_suite_is_refused(tiny_model, isolated_ledger, tmp_path):
    suite = tmp_path / "small.toml"
    suite.write_text(small_suite_toml(max_tokens=16))
    result = run_script("train", "method=grpo", f"data=suite:{suite}", f"eval_suite={suite}")
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: --data {suite}: 2 of 2 training prompts")
    assert not isolated_ledger.exists()  # refused before the ledger was opened


@pytest.mark.timeout(120)
def test_a_malformed_pair_is_refused_before_training(tmp_path, isolated_ledger):
    data = tmp_path / "pairs"
    data.mkdir()
    good = {"prompt": "Read a.py", "chosen": "yes", "rejected": "no"}
    (data / "train.jsonl").write_text(
        json.dumps(good) + "\n" + json.dumps({"prompt": "x", "rejected": "y", "system": ""}) + "\n"
    )
    (data / "valid.jsonl").write_text(json.dumps(good) + "\n")
    result = run_script("train", "method=dpo", f"data={data}")
    assert result.returncode == 1
    more = f"(and 1 more; see `just check-data {data}`)"
    assert result.stderr.strip() == f"error: {data / 'train.jsonl'}:2: chosen: missing {more}"
    assert not isolated_ledger.exists()


@pytest.mark.slow(PREFERENCE)
@pytest.mark.timeout(600)
def test_interrupted_dpo_leaves_a_usable_checkpoint(tiny_model, pairs, isolated_ledger):
    returncode, stderr = interrupt_training(
        isolated_ledger, "method=dpo", f"data={pairs}", "iters=2000", "save_every=2",
        "steps_per_report=2", "batch_size=2", "val_batches=1",
    )  # fmt: skip
    adapter = isolated_ledger.parent / "adapters" / "1"
    assert returncode == 130, stderr
    assert "the last checkpoint is usable" in stderr
    db = Database(isolated_ledger)
    run = db.table("runs").get(1)
    assert run["status"] == "interrupted" and json.loads(run["config"])["method"] == "dpo"
    result = run_script("eval", f"adapter={adapter}", "max_tokens=8", "limit=2")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow("mlx-lm-lora preference training, stopped at its first batch")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["dpo", "grpo"])
def test_the_memory_watchdog_stops_a_preference_training_too(
    method, tiny_model, pairs, prompts, isolated_ledger
):
    """A ceiling below what the loaded models already hold: the first batch drawn stops it."""
    data = pairs if method == "dpo" else prompts
    result = run_script(
        "train", f"method={method}", f"data={data}", "iters=4", "batch_size=2",
        "memory_ceiling=1MB", "plan=force",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    run = Database(isolated_ledger).table("runs").get(1)
    assert run["status"] == "failed"
    assert run["error"].startswith("memory ceiling (") and " GB of 0.001 GB)" in run["error"]
    assert run["error"].endswith("last checkpoint: none yet")
    assert Database(isolated_ledger)["train_reports"].count_where("run_id = 1") == 0
