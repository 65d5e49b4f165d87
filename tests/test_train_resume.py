"""`just train resume=RUN`: a training stopped by Ctrl-C and continued from its last checkpoint
ends with the adapter of one never stopped (real mlx-lm LoRA training of the tiny model)."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_main, write_echo_dataset
from sqlite_utils import Database

from labbench.record.ledger import finish_run, open_ledger, start_run
from labbench.train.trainresume import resume_training
from labbench.train.trainstate import ADAPTER_WEIGHTS, TrainingState

# Warm-up then cosine decay, and dropout: the schedule's step and mlx's random key must continue
# too. Checkpoints every 5 iterations, so Ctrl-C at iteration 13 throws away 11 to 13.
FLAGS = (
    *("iters=20", "save_every=5", "steps_per_report=5", "batch_size=2", "warmup=4"),
    *("dropout=0.1", "steps_per_eval=100", "val_batches=1"),
)
TOLERANCE = 1e-6  # measured: identical to the bit on one machine; allow float noise elsewhere


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Short examples, so 20 iterations stay cheap."""
    return write_echo_dataset(tmp_path_factory.mktemp("data"), train=16)


def weights(path: Path) -> dict[str, np.ndarray]:
    import mlx.core as mx

    loaded = mx.load(str(path))
    assert isinstance(loaded, dict)
    return {key: np.array(value) for key, value in loaded.items()}


def train_reports(db: Database, run_id: int) -> list[tuple]:
    rows = db.query(
        "SELECT iteration, loss, learning_rate, trained_tokens FROM train_reports"
        " WHERE run_id = ? AND split = 'train' ORDER BY iteration",
        [run_id],
    )
    return [tuple(row.values()) for row in rows]


@pytest.mark.slow("real LoRA training, three sessions")
@pytest.mark.timeout(600)
def test_ctrl_c_then_resume_gives_the_adapter_of_a_straight_run(
    tiny_model, dataset, tmp_path, isolated_ledger, monkeypatch
):
    straight_ledger = tmp_path / "straight" / "ledger.db"
    straight = run_main("train", f"data={dataset}", *FLAGS, f"ledger={straight_ledger}")
    assert straight.returncode == 0, straight.stderr

    done = TrainingState.iteration_done

    def ctrl_c_at_13(state, iteration):
        done(state, iteration)
        if iteration == 13:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(TrainingState, "iteration_done", ctrl_c_at_13)
        stopped = run_main("train", f"data={dataset}", *FLAGS)
    assert stopped.returncode == 130
    assert "continue the training with `just train resume=1`" in stopped.stderr
    db = Database(isolated_ledger)
    assert db.table("runs").get(1)["status"] == "interrupted"

    refused = run_main("train", "resume=1", "iters=40")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: --resume continues run 1 with the settings it was started with:"
        " --iters cannot change"
    )
    train_file = dataset / "train.jsonl"
    original = train_file.read_text()
    train_file.write_text(original.replace("Echo 001", "Echo 101"))
    changed = run_main("train", "resume=1")
    train_file.write_text(original)
    assert changed.returncode == 1
    assert changed.stderr.strip().endswith(
        f"error: run 1 cannot be resumed: its dataset {dataset} changed since it trained"
    )

    resumed = run_main("train", "resume=1")
    assert resumed.returncode == 0, resumed.stderr
    assert "run 1: resuming at iteration 10 of 20 (10 left)" in resumed.stderr
    run = db.table("runs").get(1)
    assert run["status"] == "ok" and db["runs"].count == 1
    a = weights(straight_ledger.parent / "adapters" / "1" / ADAPTER_WEIGHTS)
    b = weights(isolated_ledger.parent / "adapters" / "1" / ADAPTER_WEIGHTS)
    assert sorted(a) == sorted(b) and a
    worst = max(float(np.abs(a[key] - b[key]).max()) for key in a)
    assert worst <= TOLERANCE, worst
    # The loss curve continues the same run: the same reports as the straight run's (learning
    # rate and token count included), none left from the thrown-away iterations 11 to 13.
    ours, theirs = train_reports(db, 1), train_reports(Database(straight_ledger), 1)
    assert [row[0] for row in ours] == [5, 10, 15, 20]
    assert np.allclose(np.array(ours, dtype=float), np.array(theirs, dtype=float), atol=TOLERANCE)
    checkpoints = [row["iteration"] for row in db["checkpoints"].rows_where(order_by="iteration")]
    assert checkpoints == [5, 10, 15, 20]
    [resume] = list(db["run_resumes"].rows)
    assert resume["previous_status"] == "interrupted" and resume["kept"] == 10
    adapter_dir = isolated_ledger.parent / "adapters" / "1"
    assert sorted(path.name for path in adapter_dir.iterdir()) == [
        "adapter_config.json",
        ADAPTER_WEIGHTS,
        "checkpoints",
    ]
    assert (adapter_dir / "checkpoints" / "0000015" / "optimizer.safetensors").is_file()


def test_a_training_without_a_checkpoint_cannot_be_resumed(tmp_path, dataset):
    from labbench.core.errors import UserError
    from labbench.record.fingerprint import dataset_fingerprint

    db = open_ledger(tmp_path / "ledger.db")
    config = {"iters": 20, "save_every": 5, "data": str(dataset)}
    config["dataset_fingerprint"] = dataset_fingerprint(dataset)
    run = start_run(db, "train", config, model="models/tiny")
    adapter_dir = tmp_path / "adapters" / str(run.id)
    adapter_dir.mkdir(parents=True)
    run.update(adapter=str(adapter_dir))
    finish_run(run, "interrupted")
    with pytest.raises(UserError) as raised:
        resume_training(db, run.id)
    assert str(raised.value) == (
        f"run {run.id} saved no checkpoint with its optimizer state in {adapter_dir}"
        " (one every save_every=5 iterations): nothing to resume from; train it again"
    )
    assert db["run_resumes"].count == 0


@pytest.mark.slow("2 data-parallel ranks through mlx.launch, twice")
@pytest.mark.timeout(600)
def test_a_two_rank_training_resumes_on_two_ranks(tiny_model, dataset, tmp_path):
    """A finished np=2 run is set back to how Ctrl-C after iteration 3 leaves it (checkpoint 4
    gone, later reports gone, `interrupted`), then resumed: the ranks restore the checkpoint,
    optimizer state and data position, and end where the uninterrupted run ended. (Ctrl-C
    itself cannot be timed to an iteration across processes; 4 iterations: ring is slow here.)"""
    import shutil

    from labbench.core.settings import LoraSettings
    from labbench.record.fingerprint import dataset_fingerprint
    from labbench.serving.server import free_port
    from labbench.train.distributed import Launch
    from labbench.train.training import TrainPlan, record_training

    db = open_ledger(tmp_path / "ledger.db")
    settings = LoraSettings(
        iters=4, batch_size=2, steps_per_report=2, steps_per_eval=100, val_batches=1, save_every=2
    )
    plan = TrainPlan(
        model=str(tiny_model),
        data=dataset,
        data_fingerprint=dataset_fingerprint(dataset),
        settings=settings,
        adapters_root=tmp_path / "adapters",
        launch=Launch(2, port=free_port()),
    )
    straight = record_training(db, plan)
    adapter_dir = straight.adapter_dir
    final = weights(adapter_dir / ADAPTER_WEIGHTS)
    shutil.rmtree(adapter_dir / "checkpoints" / "0000004")
    db.execute("DELETE FROM checkpoints WHERE iteration = 4")
    db.execute("DELETE FROM train_reports WHERE iteration > 3")
    db.execute("UPDATE runs SET status = 'interrupted'")

    resumed = resume_training(db, straight.run_id)
    assert db.table("runs").get(straight.run_id)["status"] == "ok"
    assert json.loads(db.table("runs").get(straight.run_id)["config"])["distributed"]
    again = weights(resumed.adapter_dir / ADAPTER_WEIGHTS)
    worst = max(float(np.abs(final[key] - again[key]).max()) for key in final)
    assert worst <= TOLERANCE, worst
    iterations = db.query("SELECT iteration FROM train_reports WHERE split = 'train'")
    assert [row["iteration"] for row in iterations] == [2, 4]
    assert (adapter_dir / "checkpoints" / "0000004" / "optimizer.safetensors").is_file()
