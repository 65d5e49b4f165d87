"""Journal rendering from a hand-built ledger: fast, exact, no processes."""

import json

import pytest
from helpers import run_script

from labbench.evaluation import interval_summary
from labbench.journal import render_journal, write_journal
from labbench.ledger import finish_run, journal_dir, open_ledger, start_run

CATEGORIES = ["tool_calling", "code_generation", "reasoning"]


def add_eval(db, scores, suite="baseline", adapter=None, fingerprint="f1", status="ok", **cols):
    run = start_run(db, "eval", {}, model="/m/tiny", adapter=adapter, suite=suite, **cols)
    rows = []
    for index, score in enumerate(scores):
        row = {
            "prompt_id": f"p{index}",
            "category": CATEGORIES[index % 3],
            "score": score,
            "explanation": "x",
            "response": "ok",
        }
        run.add_eval_result(row)
        rows.append(row)
    run.update(fingerprint=fingerprint, summary=interval_summary(rows))
    finish_run(run, status, None if status == "ok" else "the server exited (exit code -9)")
    return run.id


@pytest.fixture
def ledger(isolated_ledger):
    db = open_ledger(isolated_ledger)
    add_eval(db, [0.0, 0.5, 1.0, 0.0, 0.0, 1.0], note="untrained")
    adapter = str(isolated_ledger.parent / "adapters" / "7")
    add_eval(db, [1.0, 0.5, 1.0, 1.0, 0.0, 1.0], adapter=adapter, fingerprint="f2")
    add_eval(db, [1.0] * 6, suite="extra", fingerprint="f3")
    add_eval(db, [0.0, 0.0], status="failed")
    add_eval(db, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0], fingerprint="f1")  # same as run 1, new score
    db.table("run_notes").insert(
        {"run_id": 2, "created_at": "t", "kind": "note", "text": "rank 16"}
    )
    db.table("run_notes").insert(
        {"run_id": 2, "created_at": "t", "kind": "goal", "text": "does it learn?"}
    )
    return db


def markdown_rows(text: str, after: str) -> list[list[str]]:
    lines = text[text.index(after) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Step"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_cumulative_table_agrees_with_the_ledger_view(ledger, isolated_ledger):
    text = render_journal(ledger, journal_dir(isolated_ledger))
    for suite in ("baseline", "extra"):
        table = markdown_rows(text, f"### Suite: {suite}")
        view = list(
            ledger.query(
                "SELECT * FROM cumulative_results WHERE suite = ? ORDER BY run_id", [suite]
            )
        )
        assert [row[0] for row in table] == [v["step"] for v in view]
        for row, expected in zip(table, view, strict=True):
            assert row[3].startswith(f"{expected['overall']:.1%} (")
            assert f"({expected['ci_low']:.1%}–{expected['ci_high']:.1%})" in row[3]
            delta = expected["delta"]
            assert row[4] == ("—" if delta is None else f"{delta * 100:+.1f} pts")
            categories = json.loads(expected["categories"])
            for column, category in zip(row[5:-1], CATEGORIES, strict=True):
                assert column == f"{categories[category]:.1%}"


def test_cumulative_table_whole(ledger, isolated_ledger):
    text = render_journal(ledger, journal_dir(isolated_ledger))
    assert markdown_rows(text, "### Suite: baseline") == [
        # Overall is the mean of the category means: (0 + 0.25 + 1) / 3 = 41.7 %.
        ["#1 Baseline", "—", "—", "41.7% (33.3%–50.0%)", "—", "0.0%", "25.0%", "100.0%",
         "tiny; untrained; ⚠ same fingerprint as #5, different score"],
        ["#2 Trained", "—", "adapters/7", "75.0% (66.7%–83.3%)", "+33.3 pts", "100.0%",
         "25.0%", "100.0%", "tiny; rank 16"],
        ["#5 Baseline", "—", "—", "66.7% (33.3%–100.0%)", "-8.3 pts", "50.0%", "50.0%",
         "100.0%", "tiny; ⚠ same fingerprint as #1, different score"],
    ]  # fmt: skip
    header = next(line for line in text.splitlines() if line.startswith("| Step"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "Step", "Dataset", "Adapter", "Overall (95% CI)", "Δ",
        "Tool Calling", "Code Gen", "Reasoning", "Notes",
    ]  # fmt: skip


def test_entries_newest_first_with_failures_goals_notes_and_flags(ledger, isolated_ledger):
    text = render_journal(ledger, journal_dir(isolated_ledger))
    titles = [line for line in text.splitlines() if line.startswith("### Run ")]
    assert [t.split(":")[0] for t in titles] == [f"### Run {i}" for i in (5, 4, 3, 2, 1)]
    failed = text[text.index("### Run 4") : text.index("### Run 3")]
    assert "[failed]" in failed
    assert "**Status:** failed: the server exited (exit code -9)" in failed
    assert "**Kept:** 2 prompt results recorded before the run stopped." in failed
    second = text[text.index("### Run 2") : text.index("### Run 1")]
    assert "**Goal:** does it learn?" in second and "**Notes:** rank 16" in second
    assert "runs #5 have the same fingerprint and a different score" in text


def test_same_ledger_same_bytes_and_plots_written(ledger, isolated_ledger):
    out = journal_dir(isolated_ledger)
    first = write_journal(ledger, out).read_bytes()
    assert write_journal(ledger, out).read_bytes() == first
    assert (out / "plots" / "scores-baseline.png").stat().st_size > 1000
    assert "![Scores by step, suite baseline](plots/scores-baseline.png)" in first.decode()


def test_note_script_adds_to_the_ledger_and_journal(ledger, isolated_ledger):
    result = run_script("note", "3", "looks too good")
    assert result.returncode == 0, result.stderr
    journal = (journal_dir(isolated_ledger) / "JOURNAL.md").read_text()
    assert "tiny; looks too good" in journal
    missing = run_script("note", "99", "x")
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error: no run 99")


def test_a_nan_loss_shows_as_nan(isolated_ledger):
    """SQLite stores a NaN loss (every answer token cut by max_seq_length) as NULL."""
    db = open_ledger(isolated_ledger)
    run = start_run(db, "train", {"iters": 2})
    for iteration, split in [(1, "val"), (2, "train")]:
        db.table("train_reports").insert(
            {"run_id": run.id, "iteration": iteration, "split": split, "loss": float("nan")}
        )
    finish_run(run, "interrupted", "interrupted by the user (Ctrl-C or SIGTERM)")
    text = write_journal(db, journal_dir(isolated_ledger)).read_text(encoding="utf-8")
    assert "- Last train loss: NaN at iteration 2" in text
    assert "- Last validation loss: NaN at iteration 1" in text
