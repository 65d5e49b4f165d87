"""Seeds and repeats: seed= sent with every request, epochs=N samples, pass@k."""

import json
import math

import pytest
from helpers import run_script, small_suite_toml
from sqlite_utils import Database

from labbench.core.settings import SamplingSettings
from labbench.core.stats import pass_at_k, pass_at_k_levels, run_summary
from labbench.eval.prompting import build_request
from labbench.eval.suite import load_suite
from labbench.serving.chatclient import Endpoint


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 5, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    assert pass_at_k(10, 6, 5) == 1.0  # fewer than k failures: some k-subset always passes
    for bad in [(5, 0, 0), (5, 0, 6), (5, 6, 1), (5, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_pass_at_k_levels():
    assert pass_at_k_levels(1) == [1]
    assert pass_at_k_levels(3) == [1, 3]
    assert pass_at_k_levels(5) == [1, 5]
    assert pass_at_k_levels(20) == [1, 5, 10, 20]


def rows(scores: dict[str, list[float]]) -> list[dict]:
    return [
        {"prompt_id": prompt_id, "category": "c", "score": score, "epoch": epoch}
        for prompt_id, samples in scores.items()
        for epoch, score in enumerate(samples, start=1)
    ]


def test_run_summary_averages_the_estimator_over_complete_prompts():
    summary = run_summary(rows({"a": [1, 0, 0, 0], "b": [1, 1, 1, 0], "cut": [1]}), epochs=4)
    # a: c=1, b: c=3 of n=4; "cut" has one epoch of four and is left out of pass@k.
    assert summary["pass_at_k"]["1"] == pytest.approx((0.25 + 0.75) / 2)
    assert summary["pass_at_k"]["4"] == pytest.approx(1.0)
    # Three prompt means (0.25, 0.75, 1) in one category: too few for the bootstrap.
    assert summary["overall_ci_method"] == "n too small" and summary["overall_ci_low"] is None


def test_a_single_epoch_reports_no_pass_at_k():
    assert "pass_at_k" not in run_summary(rows({"a": [1.0], "b": [0.0]}), epochs=1)


def test_each_epoch_sends_its_own_seed_and_no_seed_sends_none():
    suite = load_suite("baseline")
    prompt, endpoint = suite.prompts[0], Endpoint("http://x", None)
    seeded = SamplingSettings(temperature=0.8, seed=7)
    assert build_request(suite, prompt, endpoint, seeded, epoch=1)["seed"] == 7
    assert build_request(suite, prompt, endpoint, seeded, epoch=3)["seed"] == 9
    assert "seed" not in build_request(suite, prompt, endpoint, SamplingSettings())
    assert "seed" not in SamplingSettings().as_dict()  # unseeded fingerprints stay as they were


@pytest.mark.parametrize("flag", ["epochs=0", "seed=-1"])
def test_bad_repeat_flags_are_named(flag):
    result = run_script("eval", flag)
    assert result.returncode == 2 or result.returncode == 1
    assert f"--{flag.split('=')[0]}" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def samples(ledger, run_id: int) -> dict[tuple[str, int], str]:
    found = Database(ledger).query(
        "SELECT prompt_id, epoch, response FROM eval_results WHERE run_id = ?", [run_id]
    )
    return {(r["prompt_id"], r["epoch"]): r["response"] for r in found}


@pytest.mark.slow("eval scripts, each with its tiny-model server")
@pytest.mark.timeout(300)
def test_seeded_repeats_are_recorded_and_reproducible(tiny_model, isolated_ledger, tmp_path):
    suite = tmp_path / "small.toml"
    suite.write_text(small_suite_toml(24))
    args = ["model=" + str(tiny_model), f"suite={suite}", "temperature=1.0", "seed=7", "epochs=3"]
    for _ in range(2):
        result = run_script("eval", *args)
        assert result.returncode == 0, result.stderr
    assert "pass@1" in result.stdout and "pass@3" in result.stdout

    db = Database(isolated_ledger)
    first, second = samples(isolated_ledger, 1), samples(isolated_ledger, 2)
    assert sorted(first) == [(p, e) for p in ("math", "read") for e in (1, 2, 3)]
    assert first == second, "the same seed must give the same samples"
    run = db.table("runs").get(2)
    config = json.loads(run["config"])
    assert config["sampling"]["seed"] == 7 and config["epochs"] == 3
    assert json.loads(run["summary"])["pass_at_k"].keys() == {"1", "3"}
    [summary] = db.query("SELECT prompts, samples FROM eval_summaries WHERE run_id = 2")
    assert summary == {"prompts": 2, "samples": 6}
    # A prompt's score is the mean of its epochs, and the category's is that prompt's.
    for prompt in db.query("SELECT * FROM prompt_scores WHERE run_id = 2"):
        [mean] = db.execute(
            "SELECT AVG(score) FROM eval_results WHERE run_id = 2 AND prompt_id = ?",
            [prompt["prompt_id"]],
        ).fetchone()
        assert prompt["samples"] == 3 and prompt["score"] == pytest.approx(mean)
    assert db.table("runs").get(1)["fingerprint"] == run["fingerprint"]

    # The server honours each request's seed: epoch 1 of seed 8 is epoch 2 of seed 7.
    shifted = [arg for arg in args if not arg.startswith(("seed=", "epochs="))]
    result = run_script("eval", *shifted, "seed=8", "epochs=1")
    assert result.returncode == 0, result.stderr
    third = samples(isolated_ledger, 3)
    assert third == {(p, 1): first[(p, 2)] for p in ("math", "read")}
    assert third != {(p, 1): first[(p, 1)] for p in ("math", "read")}
