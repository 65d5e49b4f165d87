"""Training side against the real thing: mlx-lm LoRA training in-process, real servers."""

import json
import re
from pathlib import Path

import pytest
from helpers import interrupt_training, run_script, small_suite_toml
from sqlite_utils import Database

from labbench.data.dummydata import write_dummy_data
from labbench.present.cumulative import model_name
from labbench.train.benchmark import VERDICTS, verdict

TRAINING = "LoRA training and a tiny-model server per eval"

SMALL_SUITE = small_suite_toml(max_tokens=16)
# A verdict's shape: one of the decisions, then the estimate in the unit that reads best.
LABELS = "|".join(re.escape(label) for _, label in VERDICTS)
VERDICT_SHAPE = rf"({LABELS}) \(100 iterations ≈ (\d+ s|\d+ min|\d+\.\d h)\)"


@pytest.mark.parametrize(
    ("sec_per_iter", "said"),
    [
        (0.43, "proceed: fast iteration (100 iterations ≈ 43 s)"),
        (0.894, "proceed: fast iteration (100 iterations ≈ 89 s)"),
        (2.4, "proceed: fast iteration (100 iterations ≈ 4 min)"),
        (5.4, "still usable (100 iterations ≈ 9 min)"),
        (53.9, "slow: consider a smaller model (100 iterations ≈ 90 min)"),
        (54, "slow: consider a smaller model (100 iterations ≈ 1.5 h)"),
        (61, "pivot to a smaller model (100 iterations ≈ 1.7 h)"),
    ],
)
def test_the_verdict_decides_by_speed_and_estimates_in_the_unit_that_reads_best(sec_per_iter, said):
    assert verdict(sec_per_iter) == said
    assert re.fullmatch(VERDICT_SHAPE, said)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data") / "dummy"
    write_dummy_data(data, 40, seed=0)
    return data


@pytest.mark.slow(TRAINING)
@pytest.mark.timeout(600)
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
    # The decision and the estimate in the user's terms follow the measured speed, which is this
    # machine's: the tiny model reads `proceed ... ≈ 43 s` alone, `still usable ... ≈ 9 min`
    # on a loaded machine. Which verdict each speed gets is tested above.
    assert re.fullmatch(VERDICT_SHAPE, summary["verdict"]), summary["verdict"]
    assert summary["verdict"] == verdict(summary["sec_per_iter"])
    # mlx-lm's own timing explained, not a bare ratio.
    assert result.stdout.splitlines()[-1] == f"verdict: {summary['verdict']}"
    assert "agreement" not in result.stdout and "from mlx-lm's)" in result.stdout
    # Our wall clock and mlx-lm's own iterations_per_second measure the same thing.
    assert 0.8 < summary["agreement"] < 1.25
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    assert f"### Run {run['id']}: Benchmark" in journal
    assert f"**Verdict:** {summary['verdict']}" in journal


@pytest.mark.timeout(120)
def test_bench_refuses_bad_flags():
    result = run_script("bench", "iters=2", "untimed_iters=2")
    assert result.returncode != 0
    assert result.stderr.strip() == "error: --iters must be larger than --untimed-iters"


@pytest.mark.slow(TRAINING)
@pytest.mark.timeout(600)
def test_interrupted_training_leaves_a_usable_checkpoint(tiny_model, dataset, isolated_ledger):
    returncode, stderr = interrupt_training(
        isolated_ledger, f"data={dataset}", "iters=2000", "save_every=3", "steps_per_report=3",
        "batch_size=2",
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


@pytest.mark.slow(TRAINING)
@pytest.mark.timeout(600)
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


@pytest.mark.slow(TRAINING)
@pytest.mark.timeout(600)
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
