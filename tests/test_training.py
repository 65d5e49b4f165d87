"""Training side against the real thing: mlx-lm LoRA training in-process, real servers."""

import json
import re
from pathlib import Path

import pytest
from helpers import interrupt_training, run_script, small_suite_toml
from sqlite_utils import Database

from labbench.data.dummydata import write_dummy_data
from labbench.present.cumulative import model_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SMALL_SUITE = small_suite_toml(max_tokens=16)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data") / "dummy"
    write_dummy_data(data, 40, seed=0)
    return data


def test_bench_records_every_report_and_a_verdict(tiny_model, dataset, isolated_ledger):
    result = run_script("bench", f"data={dataset}", "iters=8", "untimed_iters=3", "batch_size=2")
    assert result.returncode == 0, result.stderr
    db = Database(isolated_ledger)
    [run] = list(db["runs"].rows)
    assert run["kind"] == "bench" and run["status"] == "ok"
    reports = list(
        db.query("SELECT * FROM train_reports WHERE run_id = ? ORDER BY id", [run["id"]])
    )
    assert [r["iteration"] for r in reports] == list(range(1, 9))
    summary = json.loads(run["summary"])
    assert summary["measured_iterations"] == 5 and summary["untimed_iterations"] == 3
    assert summary["load_seconds"] > 0 and summary["peak_memory_gb"] > 0
    assert summary["verdict"].startswith("proceed")  # the tiny model is far below 5 s/iter
    # The estimate in the user's terms; mlx-lm's own timing explained, not a bare ratio.
    assert re.fullmatch(r"proceed: fast iteration \(100 iterations ≈ \d+ s\)", summary["verdict"])
    assert result.stdout.splitlines()[-1] == f"verdict: {summary['verdict']}"
    assert "agreement" not in result.stdout and "from mlx-lm's)" in result.stdout
    # Our wall clock and mlx-lm's own iterations_per_second measure the same thing.
    assert 0.8 < summary["agreement"] < 1.25
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    assert f"### Run {run['id']}: Benchmark" in journal and "**Verdict:** proceed" in journal


def test_bench_refuses_bad_flags():
    result = run_script("bench", "iters=2", "untimed_iters=2")
    assert result.returncode != 0
    assert result.stderr.strip() == "error: --iters must be larger than --untimed-iters"


def test_interrupted_training_leaves_a_usable_checkpoint(tiny_model, dataset, isolated_ledger):
    returncode, stderr = interrupt_training(
        isolated_ledger, f"data={dataset}", "iters=2000", "save_every=3", "steps_per_report=3",
        "batch_size=2", timeout=240,
    )  # fmt: skip
    adapter = isolated_ledger.parent / "adapters" / "1"
    assert returncode == 130
    assert "the last checkpoint is usable" in stderr
    db = Database(isolated_ledger)
    [run] = list(db["runs"].rows)
    assert run["status"] == "interrupted" and run["adapter"] == str(adapter)
    assert db["train_reports"].count_where("run_id = 1 AND split = 'train'") >= 1

    result = run_script("eval", f"adapter={adapter}", "max_tokens=16")
    assert result.returncode == 0, result.stderr
    [evaluated] = list(db.query("SELECT * FROM cumulative_results"))
    assert evaluated["adapter"] == str(adapter) and evaluated["step"] == "#2 Trained"
    assert evaluated["dataset"] == run["dataset"] and run["dataset"].startswith(str(dataset))
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    model = model_name(run["model"])  # the directory's name: tiny
    row = next(line for line in journal.splitlines() if line.startswith("| #2 Trained "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == ["#2 Trained", model, "adapters/1", run["dataset"]]
    assert "Run 1: Training" in journal and "[interrupted]" in journal


def train_with_checkpoint_evals(dataset, tmp_path, iters: int, save_every: int, ledger: Path):
    """`just train` with every checkpoint evaluated on the small suite; it must succeed."""
    suite = tmp_path / "small.toml"
    suite.write_text(SMALL_SUITE)
    result = run_script(
        "train",
        f"data={dataset}",
        f"iters={iters}",
        f"save_every={save_every}",
        "batch_size=2",
        f"eval_suite={suite}",
    )
    assert result.returncode == 0, result.stderr
    db = Database(ledger)
    return result, db, list(db.query("SELECT * FROM checkpoints ORDER BY iteration"))


def test_train_keeps_the_best_checkpoint_by_eval_score(
    tiny_model, dataset, isolated_ledger, tmp_path
):
    result, db, checkpoints = train_with_checkpoint_evals(dataset, tmp_path, 6, 3, isolated_ledger)
    assert [c["iteration"] for c in checkpoints] == [3, 6]
    [best] = [c for c in checkpoints if c["best"]]
    assert best["score"] == max(c["score"] for c in checkpoints)
    evals = list(db.query("SELECT * FROM runs WHERE kind = 'eval' ORDER BY id"))
    assert [e["parent_run_id"] for e in evals] == [1, 1]
    adapter = isolated_ledger.parent / "adapters" / "1"
    best_weights = (Path(best["path"]) / "adapters.safetensors").read_bytes()
    assert (adapter / "adapters.safetensors").read_bytes() == best_weights


def test_train_scores_its_final_adapter_even_between_checkpoints(
    tiny_model, dataset, isolated_ledger, tmp_path
):
    """7 iterations with checkpoints every 5: the final adapter is still evaluated."""
    result, db, checkpoints = train_with_checkpoint_evals(dataset, tmp_path, 7, 5, isolated_ledger)
    assert [c["iteration"] for c in checkpoints] == [5, 7]
    assert all(c["eval_run_id"] and c["score"] is not None for c in checkpoints)
    [best] = [c for c in checkpoints if c["best"]]
    lines = result.stdout.splitlines()
    assert lines[0] == f"recorded as run 1 in {isolated_ledger}"
    assert lines[-1] == (
        f"best checkpoint: iteration {best['iteration']} ({best['path']}), "
        f"overall {best['score']:.1%} on {tmp_path / 'small.toml'} (eval run {best['eval_run_id']})"
    )
