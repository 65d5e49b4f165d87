"""Journal rendering from a hand-built ledger: fast, exact, no processes (but the note script)."""

import json

import pytest
from helpers import run_script

from labbench.core.stats import interval_summary, run_summary
from labbench.present import journal
from labbench.present.entries import EntryData
from labbench.present.journal import render_journal, write_journal
from labbench.record.ledger import journal_dir, open_ledger

CATEGORIES = ["tool_calling", "code_generation", "reasoning"]


def add_eval(
    db,
    scores,
    *,
    model="/m/tiny",
    adapter=None,
    suite="baseline",
    temperature=0.0,
    seed=None,
    max_tokens=None,
    url=None,
    status="ok",
    fingerprint="f1",
    started_at="2026-11-02T10:00:00",
    note=None,
    order=None,
    more_config=None,
    suite_sha="s1",
):
    """An eval run as record_eval leaves it, written straight into the ledger; `order`: the
    order its results arrive in (indexes into scores)."""
    config = {
        "sampling": {"temperature": temperature, "max_tokens": max_tokens, "seed": seed},
        "url": url or "http://127.0.0.1:8080",
    }
    if not url:
        config["server_pid"] = 1234
    config |= more_config or {}
    run_id = (
        db.table("runs")
        .insert(
            {
                "kind": "eval",
                "status": status,
                "model": model,
                "adapter": adapter,
                "suite": suite,
                "started_at": started_at,
                "command": json.dumps(["just", "eval", f"model={model}"]),
                "config": json.dumps(config),
                "fingerprint": fingerprint,
                "fingerprint_parts": json.dumps({"suite": suite_sha}),
                "note": note,
                "error": None if status == "ok" else "the server exited (exit code -9)",
            }
        )
        .last_pk
    )
    rows = [
        {
            "run_id": run_id,
            "prompt_id": f"p{index}",
            "category": CATEGORIES[index % 3],
            "score": score,
            "explanation": "x",
            "response": f"answer {index}",
        }
        for index, score in enumerate(scores)
    ]
    arrived = [rows[i] for i in order or range(len(rows))]
    db.table("eval_results").insert_all(arrived)
    if status != "running":
        summary = run_summary(arrived, epochs=1)
        db.table("runs").update(run_id, {"summary": json.dumps(summary)})
    return run_id


def add_run(db, kind="train", status="ok", started_at="2026-11-02T10:00:00"):
    return (
        db.table("runs")
        .insert({"kind": kind, "status": status, "model": "/m/tiny", "started_at": started_at})
        .last_pk
    )


SIX = [0.0, 0.5, 1.0, 0.0, 0.0, 1.0]


@pytest.fixture
def ledger(isolated_ledger):
    db = open_ledger(isolated_ledger)
    add_eval(db, SIX, note="untrained")  # 1
    adapter = str(isolated_ledger.parent / "adapters" / "7")
    add_eval(db, [1.0, 0.5, 1.0, 1.0, 0.0, 1.0], adapter=adapter, fingerprint="f2")  # 2
    add_eval(db, [1.0] * 6, suite="extra", fingerprint="f3")  # 3
    add_eval(db, [0.0, 0.0], status="failed")  # 4
    add_eval(db, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0])  # 5: as run 1, another score
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


def baselines(db) -> dict[int, int | None]:
    rows = db.query("SELECT run_id, baseline_run_id FROM cumulative_results ORDER BY run_id")
    return {r["run_id"]: r["baseline_run_id"] for r in rows}


def test_delta_picks_the_right_baseline(isolated_ledger):
    """Models, adapters, temperatures, seeds, max_tokens and url= mixed in one suite."""
    db = open_ledger(isolated_ledger)
    tiny = add_eval(db, SIX)  # 1: base model, first of its configuration
    add_eval(db, SIX, model="/m/other")  # 2: another model
    trained = add_eval(db, [1.0] * 6, adapter="/a/3")  # 3: vs #1
    add_eval(db, SIX, model="tiny-chat", url="http://h:8080")  # 4: url=, a kind of its own
    add_eval(db, SIX, temperature=0.8)  # 5: other sampling: no baseline yet
    add_eval(db, SIX, adapter="/a/3", temperature=0.8)  # 6: vs #5
    add_eval(db, SIX, adapter="/a/9", model="tiny-chat", url="http://h:8080")  # 7: vs #4
    add_eval(db, SIX, seed=1, temperature=0.8)  # 8: a seed is a setting: none
    add_eval(db, SIX, max_tokens=64)  # 9: so is max_tokens: none
    add_eval(db, [1.0] * 6, adapter="/a/3", model="/m/other")  # 10: vs #2, not #1
    add_eval(db, SIX, adapter="/a/3", suite="extra")  # 11: no base model eval on extra
    add_eval(db, [0.0] * 6, status="failed")  # 12: failed: never a baseline
    again = add_eval(db, [0.5] * 6)  # 13: reproducibility check vs #1
    add_eval(db, SIX, adapter="/a/4")  # 14: vs #13, the most recent earlier
    assert baselines(db) == {
        1: None, 2: None, 3: 1, 4: None, 5: None, 6: 5, 7: 4, 8: None, 9: None, 10: 2,
        11: None, 13: 1, 14: 13,
    }  # fmt: skip
    deltas = {r["run_id"]: r for r in db.query("SELECT * FROM cumulative_results")}
    overall = {r["run_id"]: r["overall"] for r in db.query("SELECT * FROM eval_summaries")}
    assert deltas[trained]["delta"] == pytest.approx(overall[trained] - overall[tiny])
    assert deltas[again]["delta"] == pytest.approx(overall[again] - overall[tiny])
    assert deltas[1]["delta"] is None and deltas[1]["delta_pts"] is None
    assert deltas[trained]["delta_pts"] == f"{deltas[trained]['delta'] * 100:+.1f} pts vs #1"
    assert [deltas[i]["endpoint"] for i in (1, 4, 7)] == ["server", "url", "url"]


def test_repeats_a_prompt_limit_unexecuted_tests_and_an_edited_suite_are_settings_too(
    isolated_ledger,
):
    db = open_ledger(isolated_ledger)
    add_eval(db, SIX)  # 1
    add_eval(db, SIX, more_config={"epochs": 3})  # 2: repeats: none
    add_eval(db, SIX, adapter="/a/3", more_config={"epochs": 3})  # 3: vs #2
    add_eval(db, SIX, more_config={"limit": 4})  # 4: the first 4 prompts only: none
    add_eval(db, SIX, more_config={"execution": {"enabled": False}})  # 5: tests not run: none
    add_eval(db, SIX, more_config={"epochs": 1, "execution": {"enabled": True}})  # 6: vs #1
    add_eval(db, SIX, adapter="/a/3", suite_sha="s2")  # 7: the suite file was edited: none
    add_eval(db, SIX, suite_sha="s2")  # 8: the edited suite's first base run: none
    add_eval(db, SIX, adapter="/a/3", suite_sha="s2")  # 9: vs #8, not #6
    assert baselines(db) == {1: None, 2: None, 3: 2, 4: None, 5: None, 6: 1, 7: None, 8: None, 9: 8}
    db.table("runs").update(2, {"summary": json.dumps({"pass_at_k": {"1": 0.5, "3": 0.75}})})
    text = render_journal(db, isolated_ledger.parent / "journal")
    tables = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ")
    ]
    header = next(cells for cells in tables if cells[0] == "Step")
    row = dict(
        zip(header, next(cells for cells in tables if cells[0] == "#2 Baseline"), strict=True)
    )
    assert row["Sampling"] == "3 epochs" and row["pass@k"] == "@1 50.0%, @3 75.0%"
    assert "- 3 epochs per prompt: pass@1 50.0%, pass@3 75.0%" in text
    samplings = {cells[header.index("Sampling")] for cells in tables if cells[0][:1] == "#"}
    assert {"first 4 prompts", "tests not run"} <= samplings


def test_cumulative_table_agrees_with_the_ledger_view(ledger, isolated_ledger):
    text = render_journal(ledger, journal_dir(isolated_ledger))
    view = list(ledger.query("SELECT * FROM cumulative_results"))
    summaries = {r["run_id"]: r for r in ledger.query("SELECT * FROM eval_summaries")}
    for suite in ("baseline", "extra"):
        table = markdown_rows(text, f"### Suite: {suite}")
        expected = [
            v
            for v in ledger.query(
                "SELECT * FROM cumulative_results WHERE suite = ? ORDER BY base_model, run_id",
                [suite],
            )
        ]
        assert [row[0] for row in table] == [v["step"] for v in expected]
        for row, want in zip(table, expected, strict=True):
            low, high = want["ci_low"], want["ci_high"]
            ci = "n too small" if low is None else f"{low:.1%}–{high:.1%}"
            assert row[4] == f"{want['overall']:.1%} ({ci})"
            delta, baseline = want["delta"], want["baseline_run_id"]
            assert row[5] == ("—" if delta is None else f"{delta * 100:+.1f} pts vs #{baseline}")
            categories = json.loads(want["categories"])
            for column, category in zip(row[6:-1], CATEGORIES, strict=True):
                assert column == f"{categories[category]:.1%}"
    # The view and the entries read scores their own way, for speed: they agree with the
    # ledger's definition (eval_summaries).
    for row in view:
        summary = summaries[row["run_id"]]
        assert row["overall"] == pytest.approx(summary["overall"])
        assert (row["success_rate"], row["prompts"]) == (
            summary["success_rate"],
            summary["prompts"],
        )
    runs = list(ledger.query("SELECT * FROM runs ORDER BY id"))
    entries = EntryData(ledger, runs, {})
    for row in ledger.query("SELECT * FROM category_scores"):
        assert entries.categories[row["run_id"]][row["category"]] == row
    for run_id, summary in summaries.items():
        headline = entries.summaries[run_id]
        assert headline["overall"] == pytest.approx(summary["overall"])
        for key in ("prompts", "failures", "success_rate"):
            assert headline[key] == summary[key]


def test_cumulative_table_whole(ledger, isolated_ledger):
    text = render_journal(ledger, journal_dir(isolated_ledger))
    assert markdown_rows(text, "### Suite: baseline") == [
        # Overall is the mean of the category means: (0 + 0.25 + 1) / 3 = 41.7 %; the scores
        # are not all 0 or 1 and categories have 2 prompts: too few for the bootstrap.
        ["#1 Baseline", "tiny", "—", "—", "41.7% (n too small)", "—", "0.0%", "25.0%",
         "100.0%", "untrained"],
        ["#2 Trained", "tiny", "adapters/7", "—", "75.0% (n too small)", "+33.3 pts vs #1",
         "100.0%", "25.0%", "100.0%", "rank 16"],
        ["#5 Baseline", "tiny", "—", "—", "66.7% (30.0%–90.3%)", "+25.0 pts vs #1", "50.0%",
         "50.0%", "100.0%", "⚠ same fingerprint as #1, different score (should have been"
         " identical)"],
    ]  # fmt: skip
    header = next(line for line in text.splitlines() if line.startswith("| Step"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "Step", "Model", "Adapter", "Dataset", "Overall (95% CI)", "Δ",
        "Tool Calling", "Code Gen", "Reasoning", "Notes",
    ]  # fmt: skip
    assert "Δ: an adapter's row against its base model's most recent earlier eval" in text


def test_rows_grouped_by_base_model_with_model_and_sampling(isolated_ledger):
    db = open_ledger(isolated_ledger)
    add_eval(db, SIX, model="/models/zeta")
    add_eval(db, SIX, model="Qwen/Qwen2.5-Coder-0.5B-Instruct", temperature=0.7, seed=3)
    add_eval(db, SIX, model="/models/zeta", adapter="/a/1")
    add_eval(db, SIX, model="tiny-chat", url="http://h:1")
    rows = markdown_rows(render_journal(db, journal_dir(isolated_ledger)), "### Suite: baseline")
    assert [(r[0], r[1], r[4]) for r in rows] == [
        ("#1 Baseline", "zeta", "—"),
        ("#3 Trained", "zeta", "—"),
        ("#2 Baseline", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "T 0.7, seed 3"),
        ("#4 Baseline", "tiny-chat (url=)", "—"),
    ]


def test_intervals_are_the_same_bytes_whatever_the_order(isolated_ledger):
    db = open_ledger(isolated_ledger)
    scores = [0.25, 0.5, 1.0, 0.0, 0.75, 1.0] * 4  # not pass/fail: the bootstrap
    first = add_eval(db, scores)
    second = add_eval(db, scores, order=list(reversed(range(len(scores)))))
    third = add_eval(db, scores, order=[(i * 7) % len(scores) for i in range(len(scores))])
    stored = [db.table("runs").get(i)["summary"] for i in (first, second, third)]
    assert stored[0] == stored[1] == stored[2]
    assert json.loads(stored[0])["overall_ci_method"] == "bootstrap"
    low, high = json.loads(stored[0])["overall_ci_low"], json.loads(stored[0])["overall_ci_high"]
    assert low < 0.5833 < high  # the overall score is inside its interval


def test_a_tiny_suite_gets_no_false_certainty(isolated_ledger):
    db = open_ledger(isolated_ledger)
    pass_fail = add_eval(db, [1.0, 0.0])  # one prompt in each of two categories
    graded = add_eval(db, [1.0, 0.5], fingerprint="f2")
    rows = {r["run_id"]: r for r in db.query("SELECT * FROM cumulative_results")}
    # Wilson at 50 % with n = 2 is wide, never the point 50.0–50.0.
    assert rows[pass_fail]["ci_pct"] == "9.5%–90.5%"
    assert rows[pass_fail]["ci_method"] == "wilson"
    assert rows[graded]["ci_low"] is None and rows[graded]["ci_pct"] == "n too small"
    table = markdown_rows(render_journal(db, journal_dir(isolated_ledger)), "### Suite")
    assert [row[4] for row in table] == ["50.0% (9.5%–90.5%)", "75.0% (n too small)"]


def test_the_flag_fires_only_where_runs_should_be_identical(isolated_ledger):
    db = open_ledger(isolated_ledger)
    add_eval(db, SIX, temperature=0.8, fingerprint="hot")  # 1
    add_eval(db, [1.0] * 6, temperature=0.8, fingerprint="hot")  # 2: sampling varies
    add_eval(db, SIX, temperature=0.8, seed=7, fingerprint="seeded")  # 3
    add_eval(db, [1.0] * 6, temperature=0.8, seed=7, fingerprint="seeded")  # 4: same seed
    add_eval(db, SIX, temperature=0.8, seed=8, fingerprint="seeded")  # 5: another seed
    add_eval(db, SIX, fingerprint="greedy")  # 6
    add_eval(db, [1.0] * 6, fingerprint="greedy")  # 7: temperature 0
    add_eval(db, [1.0] * 6, fingerprint="greedy")  # 8: as #7: silent
    text = render_journal(db, journal_dir(isolated_ledger))
    flagged = {
        row[0]: row[-1] for row in markdown_rows(text, "### Suite: baseline") if "⚠" in row[-1]
    }
    assert flagged == {
        "#4 Baseline": "⚠ same fingerprint as #3, different score (should have been identical)",
        "#7 Baseline": "⚠ same fingerprint as #6, different score (should have been identical)",
    }


def test_entries_newest_first_with_failures_goals_notes_and_flags(ledger, isolated_ledger):
    text = render_journal(ledger, journal_dir(isolated_ledger))
    titles = [line for line in text.splitlines() if line.startswith("### Run ")]
    assert [t.split(":")[0] for t in titles] == [f"### Run {i}" for i in (5, 4, 3, 2, 1)]
    failed = text[text.index("### Run 4") : text.index("### Run 3")]
    assert "[failed]" in failed
    assert "**Status:** failed: the server exited (exit code -9)" in failed
    assert (
        "**Kept:** 2 prompt results recorded before the run stopped;"
        " `just eval resume=4` asks the rest."
    ) in failed
    second = text[text.index("### Run 2") : text.index("### Run 1")]
    assert "**Goal:** does it learn?" in second and "**Notes:** rank 16" in second
    assert "**Sampling:** temperature 0, seed none, max_tokens from the suite" in second
    fifth = text[text.index("### Run 5") : text.index("### Run 4")]
    assert "⚠ same fingerprint as #1, different score" in fifth


def test_the_excerpt_is_the_lowest_scoring_prompt(isolated_ledger):
    db = open_ledger(isolated_ledger)
    add_eval(db, [1.0, 0.5, 0.0, 1.0, 0.0, 0.5], order=[5, 4, 3, 2, 1, 0])
    text = render_journal(db, journal_dir(isolated_ledger))
    excerpt = text[text.index("**Raw output") :].splitlines()
    assert excerpt[:3] == [
        "**Raw output (excerpt: the lowest-scoring prompt, ties by prompt id):**",
        "```text",
        "[p2, score 0] answer 2",
    ]


def test_a_whitespace_answer_is_one_line_in_the_journal_and_the_report(isolated_ledger):
    from labbench.present.report import render_report

    db = open_ledger(isolated_ledger)
    run_id = add_eval(db, [0.0, 1.0])
    db.execute("UPDATE eval_results SET response = ? WHERE prompt_id = 'p0'", ["\n" * 312])
    text = render_journal(db, journal_dir(isolated_ledger))
    excerpt = text[text.index("**Raw output") :].splitlines()
    assert excerpt[2] == "[p0, score 0] (312 blank lines)"
    assert "\n\n\n" not in text
    assert "<pre>(312 blank lines)</pre>" in render_report(db, run_id)


def test_blank_lines_are_counted_where_they_run_on():
    from labbench.core.formatting import collapsed_blank_lines

    assert collapsed_blank_lines("\n" * 312) == "(312 blank lines)"
    assert collapsed_blank_lines("\n") == "(1 blank line)"
    assert collapsed_blank_lines(" \t ") == "(3 whitespace characters)"
    assert collapsed_blank_lines("") == ""
    assert collapsed_blank_lines("a\n\n\nb") == "a\n\n\nb"  # two blank lines: as they are
    code = "def f():\n    return 1\n" + "\n  \n" * 5 + "print(f())"
    assert collapsed_blank_lines(code) == "def f():\n    return 1\n(10 blank lines)\nprint(f())"


def test_same_ledger_same_bytes_and_plots_written(ledger, isolated_ledger):
    out = journal_dir(isolated_ledger)
    first = write_journal(ledger, out).read_bytes()
    assert write_journal(ledger, out).read_bytes() == first
    assert (out / "plots" / "scores-baseline.png").stat().st_size > 1000
    assert (out / "plots" / "scores-extra.png").stat().st_size > 1000  # a single run
    assert "![Scores by lineage, suite baseline](plots/scores-baseline.png)" in first.decode()


def test_archive_files_are_written_once(isolated_ledger, monkeypatch):
    """Older entries move to journal/archive/YYYY-MM.md once every run in them is older than
    the newest RECENT_ENTRIES and none is running; the files never change again."""
    monkeypatch.setattr(journal, "RECENT_ENTRIES", 3)
    monkeypatch.setattr(journal, "ARCHIVE_CHUNK", 2)
    db = open_ledger(isolated_ledger)
    add_eval(db, SIX, started_at="2026-10-30T09:00:00")  # 1 ┐ 2026-10.md
    add_run(db, started_at="2026-10-31T09:00:00")  # 2      ┘
    add_eval(db, SIX, started_at="2026-10-31T10:00:00")  # 3: 2026-10-2.md
    add_eval(db, [1.0] * 6, started_at="2026-11-01T09:00:00")  # 4 ┐ 2026-11.md, with a
    add_run(db, status="running", started_at="2026-11-01T10:00:00")  # 5 ┘ running run
    for day in (2, 3, 4):
        add_eval(db, SIX, started_at=f"2026-11-0{day}T09:00:00")  # 6, 7, 8
    out = journal_dir(isolated_ledger)
    text = write_journal(db, out).read_text()
    archive = out / "archive"
    assert sorted(p.name for p in archive.iterdir()) == ["2026-10-2.md", "2026-10.md"]
    october = (archive / "2026-10.md").read_bytes()
    stamp = (archive / "2026-10.md").stat().st_mtime_ns
    assert [line for line in text.splitlines() if line.startswith("### Run ")][0].startswith(
        "### Run 8:"
    )
    assert "### Run 3:" not in text and "### Run 4:" in text  # 4 waits for 5 to finish
    assert "### Run 1:" in october.decode() and "| #1 Baseline |" in october.decode()

    db.table("run_notes").insert(
        {"run_id": 1, "created_at": "t", "kind": "note", "text": "a late word"}
    )
    db.table("runs").update(5, {"status": "ok"})
    add_eval(db, [1.0] * 6, started_at="2026-11-05T09:00:00")  # 9
    text = write_journal(db, out).read_text()
    assert (archive / "2026-10.md").read_bytes() == october
    assert (archive / "2026-10.md").stat().st_mtime_ns == stamp  # not even rewritten
    assert "2026-11.md" in [p.name for p in archive.iterdir()]
    assert "- Run 1 (tiny, [archive/2026-10.md](archive/2026-10.md)): note: a late word" in text
    assert "a late word" not in october.decode()


def test_note_script_adds_to_the_ledger_and_journal(ledger, isolated_ledger):
    result = run_script("note", "3", "looks too good")
    assert result.returncode == 0, result.stderr
    journal_text = (journal_dir(isolated_ledger) / "JOURNAL.md").read_text()
    assert "| looks too good |" in journal_text
    missing = run_script("note", "99", "x")
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error: no run 99")


def test_a_nan_loss_shows_as_nan(isolated_ledger):
    """SQLite stores a NaN loss (every answer token cut by max_seq_length) as NULL."""
    db = open_ledger(isolated_ledger)
    run_id = add_run(db, status="interrupted")
    for iteration, split in [(1, "val"), (2, "train")]:
        db.table("train_reports").insert(
            {"run_id": run_id, "iteration": iteration, "split": split, "loss": float("nan")}
        )
    text = write_journal(db, journal_dir(isolated_ledger)).read_text(encoding="utf-8")
    assert "- Last train loss: NaN at iteration 2" in text
    assert "- Last validation loss: NaN at iteration 1" in text


def test_m009_recomputes_the_stored_intervals(isolated_ledger):
    """Intervals stored before m009 depended on the order prompts finished in."""
    from sqlite_utils import Database

    from labbench.record.migrations import migrations

    db = Database(isolated_ledger)
    migrations.apply(db, stop_before="m009_journal_views")
    run_id = add_eval(db, [1.0, 0.0, 1.0, 1.0, 0.0, 1.0], status="running")
    db.table("runs").update(run_id, {"status": "ok", "summary": json.dumps(
        {"overall_ci_low": 0.31, "overall_ci_high": 0.92, "note": "kept"}
    )})  # fmt: skip
    migrations.apply(db)
    summary = json.loads(db.table("runs").get(run_id)["summary"])
    prompts = list(db.query("SELECT * FROM prompt_scores WHERE run_id = ?", [run_id]))
    assert summary == {"note": "kept", **interval_summary(prompts)}
    assert summary["overall_ci_method"] == "wilson"


def test_the_score_plot_joins_each_run_to_its_baseline_only(isolated_ledger):
    from labbench.present.cumulative import cumulative_rows
    from labbench.present.plots import lineage_lines

    db = open_ledger(isolated_ledger)
    add_eval(db, SIX)  # 1
    add_eval(db, SIX, model="/m/other")  # 2
    add_eval(db, SIX, adapter="/a/1")  # 3: a step from #1
    add_eval(db, SIX, model="tiny-chat", url="http://h:1")  # 4: alone
    add_eval(db, SIX, model="/m/other", adapter="/a/2")  # 5: a step from #2
    add_eval(db, SIX)  # 6: #1 again
    rows = sorted(cumulative_rows(db, list(range(1, 7))), key=lambda r: r["run_id"])
    assert lineage_lines(rows) == [(1, 3), (2, 5), (1, 6)]


def test_unscored_prompts_and_runs_render(isolated_ledger):
    """Prompts whose tests were not run have no score (NULL): left out, never a crash."""
    db = open_ledger(isolated_ledger)
    add_eval(db, [None, None, None])  # 1: nothing scored
    add_eval(db, [1.0, None, 0.0, 1.0, None, 0.0], adapter="/a/1")  # 2
    write_journal(db, journal_dir(isolated_ledger))
    rows = markdown_rows(render_journal(db, journal_dir(isolated_ledger)), "### Suite: baseline")
    assert [(r[0], r[4], r[5]) for r in rows] == [
        ("#1 Baseline", "—", "—"),
        ("#2 Trained", "50.0% (15.0%–85.0%)", "—"),
    ]
    view = {r["run_id"]: r for r in db.query("SELECT * FROM cumulative_results")}
    assert view[1]["overall"] is None and view[2]["baseline_run_id"] == 1
