"""The learning demo, small-scale: the lab detects that LoRA taught the tiny model to call tools.

Runs `demo --small` as a user would (real server, real LoRA training, real evals) and reads the
rise from the ledger, where the journal reads it too.
"""

import json

import pytest
import sqlite_utils
from helpers import run_script

# Only a guard against hangs: the small demo takes ~5 min on 2 quiet cores; on this shared
# machine its training ran at 4.6-19 s/iter instead of ~0.6 (the whole demo: over 9 min).
DEMO_HANG_S = 2400

pytestmark = [
    pytest.mark.slow("the small demo: tiny-model servers and LoRA training"),
    pytest.mark.timeout(DEMO_HANG_S + 120),
]

# The small demo (400 LoRA iterations) measured +0.23 (seed 0) and +0.20 (seed 1) here, the full
# one +0.33 and +0.28. The margin absorbs run-to-run differences in floating-point rounding (BLAS
# threads), which change which of the 15 prompts flip; 0.1 is still 1.5 prompts' worth of score.
MIN_RISE = 0.1


def test_small_demo_shows_tool_calling_rising_above_the_baseline(isolated_ledger):
    done = run_script("demo", "--small", timeout=DEMO_HANG_S)
    assert done.returncode == 0, done.stderr[-3000:]

    db = sqlite_utils.Database(isolated_ledger)
    [demo] = db["runs"].rows_where("kind = 'demo'")
    assert demo["status"] == "ok"
    children = db["runs"].rows_where("parent_run_id = ?", [demo["id"]])
    children = {run["note"]: run for run in children}
    baseline, trained, after = (
        children["demo: baseline"],
        children["demo: training"],
        children["demo: with the adapter"],
    )
    assert [baseline["status"], trained["status"], after["status"]] == ["ok", "ok", "ok"]
    assert baseline["adapter"] is None and after["adapter"] == trained["adapter"]

    def tool_calling(run_id: int) -> float:
        [row] = db.query(
            "select score from category_scores where run_id = ? and category = 'tool_calling'",
            [run_id],
        )
        return row["score"]

    before_score, after_score = tool_calling(baseline["id"]), tool_calling(after["id"])
    assert after_score - before_score >= MIN_RISE, (before_score, after_score)
    # The demo names the runs it compares; their scores live only in the ledger's views.
    summary = json.loads(demo["summary"])
    assert (summary["baseline_run"], summary["adapter_run"]) == (baseline["id"], after["id"])
    assert "rise" not in summary and "before" not in summary

    # The journal shows both rows of the cumulative table, the adapter's with its dataset.
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text(encoding="utf-8")
    assert "Baseline" in journal
    assert f"{after_score:.1%}" in journal or f"{after_score * 100:.1f}" in journal
    assert "demo-seed0" in journal
    assert f"**Verdict:** Tool Calling {before_score:.1%} → {after_score:.1%}" in journal
    assert done.stdout.startswith(f"tool_calling: {before_score:.1%}")
