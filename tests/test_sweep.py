"""A small sweep end to end on the shipped tiny chat model: real training, real servers."""

import json
import math
import socket
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import run_main
from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.core.formatting import percent, signed_points
from labbench.data.dummydata import write_dummy_data

pytestmark = [
    pytest.mark.slow("a sweep: LoRA trainings and a tiny-model server per eval"),
    pytest.mark.timeout(900),
]

T_9875_DF1 = 25.4517  # Student's t, 1 - 0.05 / 2 / 2 (two configurations), 1 df (two seeds)

# Four baseline prompts the tiny chat model scores above 0 on, so the table has something in it.
SYSTEM = (  # the baseline suite's
    "You are a coding assistant: use a tool when the task needs a file or a command,"
    " otherwise answer directly."
)
SUITE = """
name = "sweepcheck"
[defaults]
system = "SYSTEM"
max_tokens = 32
tools = ["read_file"]
[tools.read_file]
description = "Read a text file"
parameters = { type = "object", properties = { path = { type = "string" } }, required = ["path"] }
[[prompts]]
id = "tool-none-git-status"
category = "tool_calling"
prompt = "Briefly, what does git status show? No need to run it."
expect_tools = []
[[prompts]]
id = "tool-none-http-404"
category = "tool_calling"
prompt = "What does HTTP status 404 mean?"
expect_tools = []
expect_keywords = ["not found"]
[[prompts]]
id = "code-reverse-string"
category = "code_generation"
prompt = "Write a Python function that reverses a string."
expect_keywords = ["def", "return"]
[[prompts]]
id = "code-largest"
category = "code_generation"
prompt = "Write a Python function that finds the largest number in a list without using max()."
expect_keywords = ["def", "for", "return"]
""".replace("SYSTEM", SYSTEM)

SWEEP = """
model = "{model}"
data = "{data}"
suite = "suite.toml"
seeds = [{seeds}]
[train]
iters = 4
batch_size = 2
save_every = 4
steps_per_eval = 4
val_batches = 1
[grid]
{grid}
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data") / "dummy"
    write_dummy_data(data, 40, seed=0)
    return data


def sweep_file(folder: Path, dataset: Path, grid: str, seeds: str = "0, 1") -> Path:
    (folder / "suite.toml").write_text(SUITE)
    path = folder / "lr.toml"
    model = PROJECT_ROOT / "models" / "tiny-chat"
    path.write_text(SWEEP.format(model=model, data=dataset, seeds=seeds, grid=grid))
    return path


def count(db: Database, kind: str) -> int:
    return db["runs"].count_where("kind = ?", [kind])


def test_small_sweep_end_to_end_and_a_rerun_trains_nothing(dataset, tmp_path, isolated_ledger):
    path = sweep_file(tmp_path, dataset, "learning_rate = [1e-5, 3e-3]")
    result = run_main("sweep", str(path))
    assert result.returncode == 0, result.stderr
    db = Database(isolated_ledger)
    assert (count(db, "sweep"), count(db, "train"), count(db, "eval")) == (1, 4, 5)
    trials = list(db.query("SELECT * FROM sweep_trials ORDER BY id"))
    assert [(t["label"], t["seed"], t["status"]) for t in trials] == [
        ("learning_rate=1e-05", 0, "ok"),
        ("learning_rate=1e-05", 1, "ok"),
        ("learning_rate=0.003", 0, "ok"),
        ("learning_rate=0.003", 1, "ok"),
    ]
    assert {t["host"] for t in trials} == {socket.gethostname()}
    assert "trial 4/4 (learning_rate=0.003, seed 1): 4 iterations, then the eval; 3 done" in (
        result.stderr
    )

    # The table and verdict, recomputed here from each eval's overall score.
    overall = {row["run_id"]: row["overall"] for row in db.query("SELECT * FROM eval_summaries")}
    by_label: dict[str, list[float]] = {}
    for trial in trials:
        by_label.setdefault(trial["label"], []).append(overall[trial["eval_run_id"]])
    [base_run] = [r["id"] for r in db["runs"].rows_where("kind = 'eval' AND adapter IS NULL")]
    base = overall[base_run]
    # The base model is evaluated first, so each trial's row in the journal has its Δ against
    # it, as the sweep section does (issue 19.7).
    found = db.execute("SELECT run_id, baseline_run_id FROM cumulative_results").fetchall()
    baselines = dict(found)
    assert base_run < min(t["eval_run_id"] for t in trials)
    assert {baselines[t["eval_run_id"]] for t in trials} == {base_run}
    best = max(by_label, key=lambda label: statistics.mean(by_label[label]))
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    assert "## Sweeps" in journal and "### Sweep run 1: lr on sweepcheck" in journal
    assert f"Base model: {percent(base)} overall (eval run #{base_run})" in journal
    for label, scores in by_label.items():
        mean, sd = statistics.mean(scores), statistics.stdev(scores)
        half = 12.7062 * sd / math.sqrt(2)
        shown = label + (" (best)" if label == best else "")
        cells = [shown, "0,1", f"{percent(mean)} ± {sd * 100:.1f}"]
        cells.append(f"{percent(mean - half)}–{percent(mean + half)}")
        row = next(line for line in journal.splitlines() if line.startswith(f"| {shown} "))
        assert [c.strip() for c in row.strip("|").split("|")][:4] == cells
        assert row.rstrip(" |").endswith(signed_points(mean - base))
    scores = by_label[best]
    diff = statistics.mean(scores) - base
    half = T_9875_DF1 * statistics.stdev(scores) / math.sqrt(2)
    low, high = diff - half, diff + half
    outcome = (
        "beats the base model beyond seed noise"
        if low > 0
        else "is worse than the base model beyond seed noise"
        if high < 0
        else "does not beat the base model beyond seed noise"
    )
    verdict = (
        f"**Verdict:** the best configuration ({best}) {outcome}: {signed_points(diff)}"
        f" (97.5% CI {signed_points(low)} to {signed_points(high)}, Bonferroni for picking"
        " the best of 2 configurations; one-sample t across 2 seeds, p = "
    )
    if statistics.stdev(scores) == 0:  # the tiny model often scores alike across seeds
        verdict = (
            f"**Verdict:** the best configuration ({best}) scored {signed_points(diff)} against"
            " the base model, the same with every one of its 2 seeds: no seed noise"
        )
    assert verdict in journal
    assert f"**Best:** {best}" in journal
    # The journal's numbers are the ledger view's.
    from labbench.present.sweepreport import load_result

    spreads = {c.label: c.spreads for c in load_result(db, 1).configurations}
    view = list(db.query("SELECT * FROM sweep_scores WHERE sweep_run_id = 1"))
    assert len(view) == sum(len(by_category) for by_category in spreads.values())
    for row in view:
        shown = spreads[row["configuration"]][row["category"]]
        assert (shown.n, shown.mean) == (row["seeds"], pytest.approx(row["mean"]))
        assert shown.sd == pytest.approx(math.sqrt(max(0.0, row["variance"])), abs=1e-9)
    assert (isolated_ledger.parent / "journal" / "plots" / "sweep-1.png").is_file()
    assert verdict.removeprefix("**Verdict:** ") in result.stdout

    rerun = run_main("sweep", str(path))
    assert rerun.returncode == 0, rerun.stderr
    assert (count(db, "sweep"), count(db, "train"), count(db, "eval")) == (2, 4, 5)
    assert "reusing 4 identical finished trial(s) from sweep run(s) #1" in rerun.stderr
    assert f"reusing the identical finished base model eval, run {base_run}" in rerun.stderr
    [second] = [r["id"] for r in db["runs"].rows_where("kind = 'sweep' AND id > 1")]
    linked = list(db["sweep_trials"].rows_where("sweep_run_id = ?", [second], order_by="id"))
    assert [t["reused_from"] for t in linked] == [1, 1, 1, 1]
    assert [t["eval_run_id"] for t in linked] == [t["eval_run_id"] for t in trials]

    groups = run_main("compare", f"sweep:{second}/lr=1e-5", f"sweep:{second}/learning_rate=0.003")
    assert groups.returncode == 0, groups.stderr
    assert "Welch's t, 2 vs 2 seeds" in groups.stdout and "verdict: " in groups.stdout


def test_a_grid_axis_that_does_not_reach_the_trainer_fails(
    dataset, tmp_path, isolated_ledger, monkeypatch
):
    import labbench.sweep.sweep

    mapped = labbench.sweep.sweep.lora_settings

    def drops_rank(sweep, configuration, seed):  # the reference project's bug
        return replace(mapped(sweep, configuration, seed), rank=8)

    monkeypatch.setattr(labbench.sweep.sweep, "lora_settings", drops_rank)
    result = run_main("sweep", str(sweep_file(tmp_path, dataset, "rank = [4, 16]", seeds="0")))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: a sweep setting did not reach the trainer: rank=4 (the trainer has 8)"
    )
    db = Database(isolated_ledger)
    statuses = {r["kind"]: r["status"] for r in db["runs"].rows}
    # the base model is evaluated first (so every trial gets a Δ), then the trial fails
    assert statuses == {"sweep": "failed", "eval": "ok", "train": "failed"}
    [trial] = list(db["sweep_trials"].rows)
    assert trial["status"] == "failed" and trial["error"].startswith("a sweep setting did not")
    assert db["train_reports"].count == 0  # it stopped before the first iteration


def test_every_checked_setting_is_read_back_from_the_trainers_objects(tiny_model, dataset):
    from labbench.core.settings import LoraSettings
    from labbench.sweep.sweep import CHECKED
    from labbench.train.lora import make_optimizer, prepare_training, training_args
    from labbench.train.trainercheck import effective_settings, unreached

    given = LoraSettings(
        iters=6, batch_size=2, learning_rate=2e-4, warmup=3, rank=4, scale=10.0, dropout=0.25,
        num_layers=1, keys=("self_attn.v_proj", "self_attn.q_proj"), mask_prompt=False,
        max_seq_length=512, steps_per_report=3, steps_per_eval=3, val_batches=2, save_every=6,
    )  # fmt: skip
    prepared = prepare_training(str(tiny_model), dataset, given)
    effective = effective_settings(
        prepared.loaded.model,
        make_optimizer(given),
        training_args(given, Path("unused")),
        prepared.train_set,
    )
    assert set(CHECKED) <= set(effective)
    assert unreached({key: getattr(given, key) for key in CHECKED}, effective) == []
    other = LoraSettings(
        iters=7, batch_size=3, learning_rate=1e-4, warmup=2, rank=8, scale=20.0, dropout=0.1,
        num_layers=2, keys=("self_attn.k_proj",), mask_prompt=True, max_seq_length=256,
        steps_per_report=2, steps_per_eval=2, val_batches=1, save_every=7,
    )  # fmt: skip
    missed = unreached({key: getattr(other, key) for key in CHECKED}, effective)
    assert [line.split("=")[0] for line in missed] == list(CHECKED)  # each one can fail


def test_ctrl_c_leaves_a_sweep_the_next_run_resumes(
    dataset, tmp_path, isolated_ledger, monkeypatch
):
    import labbench.sweep.sweep

    real_record_eval = labbench.sweep.sweep.record_eval

    def ctrl_c_at_a_trials_eval(db, plan):
        if plan.adapter is None:  # the base model's eval, which runs first
            return real_record_eval(db, plan)
        raise KeyboardInterrupt

    path = sweep_file(tmp_path, dataset, "rank = [4]", seeds="0")
    with monkeypatch.context() as patch:
        # Ctrl-C once the trial's training is done
        patch.setattr(labbench.sweep.sweep, "record_eval", ctrl_c_at_a_trials_eval)
        result = run_main("sweep", str(path))
    assert result.returncode == 130
    assert "interrupted; what was done so far is recorded in" in result.stderr
    db = Database(isolated_ledger)
    assert [(r["kind"], r["status"]) for r in db["runs"].rows] == [
        ("sweep", "interrupted"),
        ("eval", "ok"),
        ("train", "ok"),
    ]
    [trial] = list(db["sweep_trials"].rows)
    assert trial["status"] == "interrupted" and trial["train_run_id"] == 3
    pending = run_main("sweep", str(path), "--pending")
    assert pending.returncode == 0, pending.stderr
    assert pending.stdout.splitlines()[0] == "1 of 1 trials left to train"
    assert pending.stdout.splitlines()[1].endswith("  rank=4, seed 0")


def test_a_sweep_stopped_midway_is_judged_against_an_identical_earlier_base_eval(
    dataset, tmp_path, isolated_ledger, monkeypatch
):
    import labbench.sweep.sweep
    from labbench.eval.suite import load_suite
    from labbench.record.ledger import finish_run, open_ledger, start_run
    from labbench.serving.server import resolve_model
    from labbench.sweep.sweepfile import load_sweep

    path = sweep_file(tmp_path, dataset, "rank = [4]", seeds="0")
    sweep = load_sweep(path)
    plan = labbench.sweep.sweep.base_eval_plan(
        sweep, load_suite(sweep.suite), resolve_model(sweep.model)
    )
    db = open_ledger(isolated_ledger)
    earlier = start_run(db, "eval", {}, model=sweep.model, suite="sweepcheck")
    earlier.update(fingerprint=labbench.sweep.sweep.base_fingerprint(plan))
    earlier.add_eval_result({"prompt_id": "p", "category": "c", "score": 0.5})
    finish_run(earlier, "ok")

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(labbench.sweep.sweep, "run_trial", ctrl_c)  # Ctrl-C in the first trial
    assert run_main("sweep", str(path)).returncode == 130
    [stopped] = list(db["runs"].rows_where("kind = 'sweep'"))
    assert stopped["status"] == "interrupted"
    assert json.loads(stopped["summary"])["base_eval_run"] == earlier.id


def test_a_rerun_resumes_a_partly_trained_trial_and_keeps_a_finished_training(
    dataset, tmp_path, isolated_ledger, monkeypatch
):
    import labbench.sweep.sweep
    from labbench.train.trainstate import TrainingState

    path = sweep_file(tmp_path, dataset, "rank = [4]", seeds="0")
    settings = "iters = 6\nsave_every = 2\nsteps_per_report = 2"
    path.write_text(path.read_text().replace("iters = 4", settings).replace("save_every = 4\n", ""))
    done = TrainingState.iteration_done

    def ctrl_c_at_3(state, iteration):
        done(state, iteration)
        if iteration == 3:  # after the checkpoint at 2
            raise KeyboardInterrupt

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(TrainingState, "iteration_done", ctrl_c_at_3)
        assert run_main("sweep", str(path)).returncode == 130
    db = Database(isolated_ledger)
    [train] = [row["id"] for row in db["runs"].rows_where("kind = 'train'")]
    assert db.table("runs").get(train)["status"] == "interrupted"  # the trial's training

    with monkeypatch.context() as patch:  # Ctrl-C once the resumed training is done
        patch.setattr(labbench.sweep.sweep, "record_eval", ctrl_c)
        assert run_main("sweep", str(path)).returncode == 130
    assert db.table("runs").get(train)["status"] == "ok" and count(db, "train") == 1
    [resume] = list(db["run_resumes"].rows)
    assert resume["run_id"] == train and resume["kept"] == 2
    reports = db.query(
        "SELECT iteration FROM train_reports WHERE run_id = ? AND split = 'train'", [train]
    )
    assert [row["iteration"] for row in reports] == [2, 4, 6]

    result = run_main("sweep", str(path))
    assert result.returncode == 0, result.stderr
    assert count(db, "train") == 1  # never retrained
    trials = list(db.query("SELECT * FROM sweep_trials ORDER BY id"))
    assert [(t["status"], t["train_run_id"]) for t in trials] == [
        ("interrupted", train),
        ("interrupted", train),
        ("ok", train),
    ]
    assert db.table("runs").get(trials[-1]["eval_run_id"])["adapter"] == str(
        isolated_ledger.parent / "adapters" / str(train)
    )
