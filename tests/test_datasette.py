"""The ledger's Datasette views, metadata.yaml and `just browse` (scripts/browse.py).

Fast tests check the views and every query in metadata.yaml on a hand-built ledger; slow ones
start a real browse process on a ledger filled by real evals, and keep it open while one writes.
"""

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml
from helpers import communicate, run_script
from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.core.stats import flip
from labbench.record.ledger import open_ledger
from labbench.serving.server import free_port

METADATA = yaml.safe_load((PROJECT_ROOT / "metadata.yaml").read_text(encoding="utf-8"))
LEDGER_METADATA = METADATA["databases"]["ledger"]
DASHBOARDS = METADATA["plugins"]["datasette-dashboards"]
SUMMARY = json.dumps({"overall_ci_low": 0.25, "overall_ci_high": 0.75})


def run_row(run_id: int, kind: str = "eval", status: str = "ok", **columns) -> dict:
    return {
        "id": run_id,
        "kind": kind,
        "status": status,
        "model": "models/tiny",
        "suite": "baseline",
        "started_at": f"2026-01-0{run_id}T00:00:00",
        **columns,
    }


def result_row(run_id: int, prompt_id: str, score: float, error: str | None = None) -> dict:
    return {
        "run_id": run_id,
        "prompt_id": prompt_id,
        "category": prompt_id.split("-")[0],
        "score": score,
        "explanation": f"{prompt_id} scored {score}",
        "finish_reason": None if error else "stop",
        "error": error,
    }


def fill_ledger(path: Path) -> Database:
    """Two suites, a train run, a failed and an interrupted eval, a prompt that errored."""
    db = open_ledger(path)
    db.table("runs").insert_all(
        [
            run_row(1, summary=SUMMARY),
            run_row(2, kind="train", adapter="adapters/2", dataset="data/tools"),
            run_row(3, status="failed", error="the server exited"),
            run_row(4, suite="other", adapter="adapters/2", dataset="data/tools", summary=SUMMARY),
            run_row(5, adapter="adapters/2", dataset="data/tools", note="after training"),
            run_row(6, status="interrupted", error="interrupted by the user"),
            run_row(7, adapter="", summary=SUMMARY),
            run_row(8, kind="bench"),
        ]
    )
    scores = {
        1: {"tool-a": 1.0, "tool-b": 0.0, "code-a": 0.5},
        3: {"tool-a": 1.0},
        4: {"tool-a": 0.0, "code-a": 1.0},
        5: {"tool-a": 1.0, "tool-b": 1.0, "code-a": 0.0},
        6: {"tool-a": 0.0},
        7: {"tool-a": 0.5, "tool-b": 0.5, "code-a": 0.25},
    }
    rows = [result_row(r, p, s) for r, prompts in scores.items() for p, s in prompts.items()]
    rows[-1] = result_row(7, "code-a", 0.0, error="timed out")
    db.table("eval_results").insert_all(rows)
    db.table("train_reports").insert_all(
        [
            {"run_id": 2, "iteration": 10, "split": "train", "loss": 2.0, "learning_rate": 1e-5},
            {"run_id": 2, "iteration": 10, "split": "val", "loss": 2.5},
            {"run_id": 2, "iteration": 20, "split": "train", "loss": 1.5, "learning_rate": 1e-5},
            {"run_id": 8, "iteration": 5, "split": "train", "loss": 9.0},
        ]
    )
    return db


@pytest.fixture
def ledger(tmp_path) -> Database:
    return fill_ledger(tmp_path / "ledger.db")


def cumulative(run_id, suite, step, overall, baseline, delta, categories, **columns) -> dict:
    row = {
        "run_id": run_id,
        "suite": suite,
        "step": step,
        "model": "models/tiny",
        "base_model": "models/tiny",
        "adapter": None,
        "dataset": None,
        "endpoint": "server",
        "temperature": 0,
        "max_tokens": None,
        "seed": None,
        "overall": overall,
        "ci_low": 0.25,
        "ci_high": 0.75,
        "ci_method": None,
        "baseline_run_id": baseline,
        "delta": delta,
        "overall_pct": f"{overall:.1%}",
        "ci_pct": "25.0%–75.0%",
        "delta_pts": None if baseline is None else f"{delta * 100:+.1f} pts vs #{baseline}",
        "categories": json.dumps(categories, separators=(",", ":")),
        "success_rate": 1.0,
        "prompts": 3,
        "fingerprint": None,
        "note": None,
        "started_at": f"2026-01-0{run_id}T00:00:00",
        "epochs": 1,
        "prompt_limit": None,
        "executed": 1,
        "pass_at_k": None,
    }
    fuse = ("fuse_run_id", "fused_bits", "fused_adapter", "fused_train_run_id", "fused_checkpoint")
    return row | dict.fromkeys([*fuse, "fuse_warning"]) | columns


def test_cumulative_results_is_the_journal_table(ledger):
    rows = list(ledger.query("SELECT * FROM cumulative_results ORDER BY suite, run_id"))
    trained = {"adapter": "adapters/2", "dataset": "data/tools"}
    assert rows == [
        cumulative(1, "baseline", "#1 Baseline", 0.5, None, None, {"code": 0.5, "tool": 0.5}),
        # An adapter against its base model's eval; a base model's run against the previous
        # identical one.
        cumulative(
            5,
            "baseline",
            "#5 Trained",
            0.5,
            1,
            0.0,
            {"code": 0.0, "tool": 1.0},
            ci_low=None,
            ci_high=None,
            ci_pct=None,
            note="after training",
            **trained,
        ),
        cumulative(
            7,
            "baseline",
            "#7 Baseline",
            0.25,
            1,
            -0.25,
            {"code": 0.0, "tool": 0.5},
            adapter="",
            success_rate=2 / 3,
        ),
        cumulative(
            4,
            "other",
            "#4 Trained",
            0.5,
            None,
            None,
            {"code": 1.0, "tool": 0.0},
            prompts=2,
            **trained,
        ),
    ]
    summaries = {r["run_id"]: r["overall"] for r in ledger.query("SELECT * FROM eval_summaries")}
    assert all(row["overall"] == summaries[row["run_id"]] for row in rows)


def test_failures_and_prompt_history(ledger):
    failures = list(
        ledger.query("SELECT what, run_id, kind, status, prompt_id, error FROM failures")
    )
    assert sorted(failures, key=lambda r: (r["what"], r["run_id"])) == [
        {"what": "prompt", "run_id": 7, "kind": "eval", "status": "ok"}
        | {"prompt_id": "code-a", "error": "timed out"},
        {"what": "run", "run_id": 3, "kind": "eval", "status": "failed"}
        | {"prompt_id": None, "error": "the server exited"},
        {"what": "run", "run_id": 6, "kind": "eval", "status": "interrupted"}
        | {"prompt_id": None, "error": "interrupted by the user"},
    ]
    history = ledger.query(
        "SELECT run_id, status, score, adapter FROM prompt_history WHERE prompt_id = 'tool-a'"
        " ORDER BY run_id"
    )
    assert [tuple(r.values()) for r in history] == [
        (1, "ok", 1.0, None),
        (3, "failed", 1.0, None),
        (4, "ok", 0.0, "adapters/2"),
        (5, "ok", 1.0, "adapters/2"),
        (6, "interrupted", 0.0, None),
        (7, "ok", 0.5, ""),
    ]
    plan = " ".join(
        row["detail"]
        for row in ledger.query(
            "EXPLAIN QUERY PLAN SELECT * FROM prompt_history WHERE prompt_id = 'tool-a'"
        )
    )
    assert "USING INDEX idx_eval_results_prompt_id" in plan


def canned(db: Database, name: str, **params) -> list[dict]:
    return list(db.query(LEDGER_METADATA["queries"][name]["sql"], params))


def test_canned_queries(ledger):
    assert canned(ledger, "compare_runs", a=1, b=5) == [
        {"prompt_id": "tool-b", "category": "tool", "score_a": 0.0, "score_b": 1.0}
        | {"delta": 1.0, "flip": "fail -> pass", "why_b": "tool-b scored 1.0"},
        {"prompt_id": "code-a", "category": "code", "score_a": 0.5, "score_b": 0.0}
        | {"delta": -0.5, "flip": "pass -> fail", "why_b": "code-a scored 0.0"},
        {"prompt_id": "tool-a", "category": "tool", "score_a": 1.0, "score_b": 1.0}
        | {"delta": 0.0, "flip": "", "why_b": "tool-a scored 1.0"},
    ]
    assert [r["why_b"] for r in canned(ledger, "compare_runs", a=1, b=7)][0] == "timed out"
    assert [(r["run_id"], r["results_kept"]) for r in canned(ledger, "failed_runs")] == [
        (6, 1),
        (3, 1),
    ]
    assert canned(ledger, "training_curves", run="2") == [
        {"iteration": 10, "train_loss": 2.0, "val_loss": 2.5, "learning_rate": "1e-05"}
        | {"tokens_per_second": None, "peak_memory_gb": None},
        {"iteration": 20, "train_loss": 1.5, "val_loss": None, "learning_rate": "1e-05"}
        | {"tokens_per_second": None, "peak_memory_gb": None},
    ]
    assert canned(ledger, "training_curves", run="8")[0]["learning_rate"] is None
    assert [r["run_id"] for r in canned(ledger, "history_of_prompt", prompt_id="tool-b")] == [
        1,
        5,
        7,
    ]
    assert [r["step"] for r in canned(ledger, "results_by_suite", suite="other")] == ["#4 Trained"]
    assert [r["run_id"] for r in canned(ledger, "results_by_suite", suite="")] == [1, 5, 7, 4]


def test_compare_runs_flips_by_the_same_rule_as_compare(tmp_path):
    """The canned query writes the pass mark in SQL; it must agree with stats.flip everywhere,
    the boundary (exactly the pass mark) included."""
    db = open_ledger(tmp_path / "flips.db")
    db.table("runs").insert_all([run_row(1), run_row(2)])
    values = [0.0, 0.25, 0.49, 0.5, 0.51, 1.0]
    pairs = [(a, b) for a in values for b in values]
    rows = []
    for i, (a, b) in enumerate(pairs):
        rows += [result_row(1, f"p-{i:02d}", a), result_row(2, f"p-{i:02d}", b)]
    db.table("eval_results").insert_all(rows)
    by_prompt = {r["prompt_id"]: r for r in canned(db, "compare_runs", a=1, b=2)}
    for i, (a, b) in enumerate(pairs):
        assert by_prompt[f"p-{i:02d}"]["flip"] == flip(a, b), (a, b)
    assert {flip(a, b) for a, b in pairs} == {"", "pass -> fail", "fail -> pass"}


def test_training_curves_show_numbers_as_the_journal_does(ledger):
    ledger.table("train_reports").insert(
        {"run_id": 2, "iteration": 30, "split": "train", "loss": 1.23456789}
        | {"learning_rate": 2.9999999999999997e-05, "tokens_per_second": 123.456}
        | {"peak_memory_gb": 0.123456}
    )
    [row] = [r for r in canned(ledger, "training_curves", run="2") if r["iteration"] == 30]
    assert row == {"iteration": 30, "train_loss": 1.235, "val_loss": None} | {
        "learning_rate": "3e-05",
        "tokens_per_second": 123.5,
        "peak_memory_gb": 0.123,
    }


def test_the_loss_charts_tick_whole_iterations():
    charts = DASHBOARDS["labbench"]["charts"]
    for name in ("loss", "bench_loss"):
        x = charts[name]["display"]["encoding"]["x"]
        assert x["field"] == "iteration"
        assert x["axis"] == {"tickMinStep": 1, "format": "d"}, name


def test_the_loss_charts_keep_bench_runs_apart_from_training(ledger):
    charts = DASHBOARDS["labbench"]["charts"]
    training = list(ledger.query(without_filters(charts["loss"]["query"])))
    bench = list(ledger.query(without_filters(charts["bench_loss"]["query"])))
    assert {r["run_id"] for r in training} == {2} and {r["run_id"] for r in bench} == {8}


def without_filters(sql: str) -> str:
    """A dashboard query as datasette-dashboards runs it when no filter is set."""
    return re.sub(r"\[\[.*?\]\]", "", sql)


def test_metadata_names_only_what_the_ledger_has(ledger):
    from datasette.vendored import pint

    units = pint.UnitRegistry()
    for name, table in LEDGER_METADATA["tables"].items():
        columns = {column.name for column in ledger[name].columns}
        assert columns, name
        assert set(table.get("columns", {})) <= columns, name
        assert set(table.get("units", {})) <= columns, name
        for unit in table.get("units", {}).values():
            units(unit)
    assert set(ledger.table_names()) | set(ledger.view_names()) <= set(LEDGER_METADATA["tables"])
    for dashboard in DASHBOARDS.values():
        for item in [*dashboard["filters"].values(), *dashboard["charts"].values()]:
            assert item["db"] == "ledger"
            assert list(ledger.query(without_filters(item["query"])))


# --- a real Datasette ------------------------------------------------------------------------


def start_browse(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "browse.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )


def stop(process: subprocess.Popen, signum: int = signal.SIGTERM) -> tuple[str, str]:
    """Signal the process, then kill it if it has not ended within 10 s."""
    if process.poll() is None:
        process.send_signal(signum)
    try:
        return process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


@contextmanager
def browsing(*args: str) -> Generator[tuple[str, subprocess.Popen], None, None]:
    """A real `just browse` on a free port: its base URL once it answers; always stopped."""
    port = free_port()
    process = start_browse(*args, f"port={port}")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, stop(process)
            try:
                if requests.get(f"{base}/-/versions.json", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "browse did not answer within 60 s"
            time.sleep(0.2)
        yield base, process
    finally:
        stop(process)


def get_json(url: str):
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, (url, response.text[:500])
    return response.json()


def rows(db: Database, sql: str, params=()) -> list[dict]:
    return list(db.query(sql, params))


def by_values(items: list[dict]) -> list[dict]:
    return sorted(items, key=lambda row: json.dumps(row, sort_keys=True))


def expected_comparison(db: Database, a: int, b: int) -> list[dict]:
    """compare_runs rebuilt in Python, the way `just compare` pairs and orders prompts."""
    sql = "SELECT prompt_id, category, score, error, explanation FROM eval_results WHERE run_id = ?"
    results_a = {r["prompt_id"]: r for r in db.query(sql, [a])}
    results_b = {r["prompt_id"]: r for r in db.query(sql, [b])}
    out = []
    for prompt_id in results_a.keys() & results_b.keys():
        score_a = results_a[prompt_id]["score"] or 0.0
        row_b = results_b[prompt_id]
        score_b = row_b["score"] or 0.0
        out.append(
            {
                "prompt_id": prompt_id,
                "category": row_b["category"],
                "score_a": score_a,
                "score_b": score_b,
                "delta": score_b - score_a,
                "flip": flip(score_a, score_b),
                "why_b": row_b["error"] or row_b["explanation"],
            }
        )
    return sorted(out, key=lambda r: (r["flip"] == "", -abs(r["delta"]), r["prompt_id"]))


@pytest.mark.slow("a Datasette server (just browse) beside a tiny-model eval")
@pytest.mark.timeout(600)
def test_browse_serves_a_real_ledger_while_an_eval_writes(tiny_model, isolated_ledger):
    first = run_script("eval", "suite=baseline", "--note", "first look")
    assert first.returncode == 0, first.stderr
    unreachable = f"url=http://127.0.0.1:{free_port()}"
    assert run_script("eval", unreachable, "served_model=x").returncode == 1
    db = Database(isolated_ledger)
    assert [r["status"] for r in db["runs"].rows] == ["ok", "failed"]

    with browsing() as (base, process):
        api = f"{base}/ledger"
        assert get_json(f"{api}/cumulative_results.json?_shape=array") == rows(
            db, "SELECT * FROM cumulative_results"
        )
        [result] = get_json(f"{api}/cumulative_results.json?_shape=array")
        assert (result["run_id"], result["step"], result["delta"]) == (1, "#1 Baseline", None)
        assert result["note"] == "first look" and result["ci_low"] is not None
        assert by_values(get_json(f"{api}/category_scores.json?_shape=array")) == by_values(
            rows(db, "SELECT * FROM category_scores")
        )
        prompt_id = rows(db, "SELECT prompt_id FROM eval_results ORDER BY prompt_id")[0][
            "prompt_id"
        ]
        history = get_json(f"{api}/prompt_history.json?_shape=array&prompt_id={prompt_id}")
        assert history == rows(db, "SELECT * FROM prompt_history WHERE prompt_id = ?", [prompt_id])
        assert len(history) == 1
        [failed] = get_json(f"{api}/failed_runs.json?_shape=array")
        assert (failed["run_id"], failed["status"], failed["results_kept"]) == (2, "failed", 0)
        assert failed["error"] == db.table("runs").get(2)["error"]
        assert get_json(f"{api}/failures.json?_shape=array&what=run") == rows(
            db, "SELECT * FROM failures WHERE what = 'run'"
        )

        # Another eval writes while Datasette reads (WAL): both keep working.
        second = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "scripts" / "eval.py"), "max_tokens=16"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
        )
        try:
            while second.poll() is None:
                assert get_json(f"{api}/runs.json?_shape=array")
                time.sleep(0.5)
            _, stderr = communicate(second)
        finally:
            stop(second)
        assert second.returncode == 0, stderr

        cumulative = get_json(f"{api}/cumulative_results.json?_shape=array&_sort=run_id")
        assert cumulative == rows(db, "SELECT * FROM cumulative_results ORDER BY run_id")
        assert [(r["run_id"], r["step"]) for r in cumulative] == [
            (1, "#1 Baseline"),
            (3, "#3 Baseline"),
        ]
        # Run 3 set max_tokens=16 and run 1 did not: other sampling settings, no baseline.
        assert (cumulative[1]["baseline_run_id"], cumulative[1]["delta"]) == (None, None)
        comparison = get_json(f"{api}/compare_runs.json?_shape=array&a=1&b=3")
        assert comparison == expected_comparison(db, 1, 3)
        assert len(comparison) == db["eval_results"].count_where("run_id = 1")

        # Every page of the cockpit renders: tables and views, canned queries, the dashboard.
        for name in LEDGER_METADATA["tables"]:
            if not LEDGER_METADATA["tables"][name].get("hidden"):
                assert requests.get(f"{api}/{name}", timeout=30).status_code == 200, name
        for name, query in LEDGER_METADATA["queries"].items():
            params = dict.fromkeys(re.findall(r":(\w+)", query["sql"]), "1")
            response = requests.get(f"{api}/{name}", params=params, timeout=30)
            assert response.status_code == 200, name
        page = requests.get(f"{base}/-/dashboards/labbench", timeout=30)
        assert page.status_code == 200 and "Overall score by step" in page.text
        chart = DASHBOARDS["labbench"]["charts"]["scores"]
        sql = {"sql": without_filters(chart["query"]), "_shape": "objects"}
        data = requests.get(f"{api}.json", params=sql, timeout=30).json()
        assert sorted(r["run_id"] for r in data["rows"]) == [1, 3]

        stdout, stderr = stop(process)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr
    assert f"at {base}/ledger" in stdout


@pytest.mark.slow("a Datasette server (just browse)")
@pytest.mark.timeout(300)
def test_browse_any_ledger_name_and_stop_with_ctrl_c(tmp_path):
    fill_ledger(tmp_path / "experiments.db").close()
    with browsing("--ledger", str(tmp_path / "experiments.db")) as (base, process):
        runs = get_json(f"{base}/ledger/runs.json?_shape=array&_sort=id")
        assert [r["id"] for r in runs] == [1, 2, 3, 4, 5, 6, 7, 8]
        title = requests.get(f"{base}/ledger/compare_runs?a=1&b=5", timeout=30).text
        assert "Compare two eval runs prompt by prompt" in title
        _, stderr = stop(process, signal.SIGINT)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr


@pytest.mark.slow("a Datasette server (just browse)")
@pytest.mark.timeout(300)
def test_browse_user_errors_are_one_line(tmp_path):
    missing = run_script("browse", "--ledger", str(tmp_path / "none.db"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: no ledger at {tmp_path / 'none.db'} " + (
        "(run an eval first, or pass --ledger PATH)"
    )
    open_ledger(tmp_path / "ledger.db").close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_script("browse", "--ledger", str(tmp_path / "ledger.db"), f"port={port}")
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"error: port {port} on 127.0.0.1 is already in use (pass port=N)"
    )
