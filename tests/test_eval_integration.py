"""`just eval` end to end: a real mlx_lm.server on the tiny model, real HTTP, a real ledger."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_nothing_left, communicate, pid_alive, run_script, wait_for
from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.eval.suite import load_suite

pytestmark = [
    pytest.mark.slow("eval scripts, each with its tiny-model server"),
    pytest.mark.timeout(600),
]


def test_eval_records_every_prompt_and_the_journal(tiny_model, isolated_ledger):
    result = run_script("eval", "suite=baseline", "--goal", "first look")
    assert result.returncode == 0, result.stderr
    prompts = load_suite("baseline").prompts

    db = Database(isolated_ledger)
    [run] = list(db["runs"].rows)
    assert run["kind"] == "eval" and run["status"] == "ok"
    assert run["model"] == str(tiny_model) and run["suite"] == "baseline"
    assert json.loads(run["command"])[1:] == [
        "scripts/eval.py",
        "suite=baseline",
        "--goal",
        "first look",
    ]
    rows = list(db.query("SELECT * FROM eval_results WHERE run_id = ?", [run["id"]]))
    assert sorted(r["prompt_id"] for r in rows) == sorted(p.id for p in prompts)
    assert all(r["explanation"] for r in rows)
    assert not pid_alive(json.loads(run["config"])["server_pid"])

    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    [summary] = list(db.query("SELECT * FROM eval_summaries"))
    assert f"| #{run['id']} Baseline " in journal
    assert f"{summary['overall']:.1%}" in journal
    assert "**Goal:** first look" in journal
    assert "overall" in result.stdout and "success rate" in result.stdout

    # The same ledger always gives the same bytes.
    before = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_bytes()
    assert run_script("journal").returncode == 0
    assert (isolated_ledger.parent / "journal" / "JOURNAL.md").read_bytes() == before


@pytest.mark.parametrize("model", ["does/not/exist", "/no/such/model/dir", "EMPTY_DIR"])
def test_bad_model_fails_fast_with_one_line(model, tmp_path, isolated_ledger, process_tag):
    if model == "EMPTY_DIR":
        model = str(tmp_path / "empty")
        os.mkdir(model)
    result = run_script("eval", f"model={model}")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr
    assert model in lines[-1] or "does not exist" in lines[-1] or "no such" in lines[-1]
    # Fast: the server's own error ended it, not the wait for a server that never came up.
    assert "not ready after" not in lines[-1]
    assert_nothing_left()  # no server of this eval outlives it (the only ones this test counts)
    if isolated_ledger.exists():
        statuses = [r["status"] for r in Database(isolated_ledger)["runs"].rows]
        assert statuses in ([], ["failed"])
    if model.endswith("empty"):  # refused at the door: no server, no run
        assert (
            lines[-1] == f"error: --model {model}: no config.json in {model}: not a model directory"
        )
        assert not isolated_ledger.exists()


def test_taken_port_fails_fast_and_never_evaluates_the_other_listener(tiny_model):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_script("eval", f"port={port}")
    assert result.returncode != 0
    assert f"port {port}" in result.stderr.strip().splitlines()[-1]


def start_eval(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "eval.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )


def server_pid_and_results(ledger) -> tuple[int, int] | None:
    if not ledger.exists():
        return None
    db = Database(ledger)
    try:
        runs = list(db.query("SELECT id, config FROM runs"))
    except sqlite3.OperationalError:  # the eval is still creating the ledger
        return None
    if not runs or "server_pid" not in json.loads(runs[0]["config"]):
        return None
    results = db["eval_results"].count
    return (json.loads(runs[0]["config"])["server_pid"], results) if results >= 2 else None


def test_killed_server_leaves_a_failed_run_with_earlier_results(tiny_model, isolated_ledger):
    process = start_eval("concurrency=1", "max_tokens=512")
    try:
        server_pid, _ = wait_for(
            lambda: server_pid_and_results(isolated_ledger), "its server and 2 results"
        )
        os.kill(server_pid, signal.SIGKILL)
        _, stderr = communicate(process)
    finally:
        process.kill()
    assert process.returncode == 1
    db = Database(isolated_ledger)
    [run] = list(db["runs"].rows)
    kept = db["eval_results"].count
    assert run["status"] == "failed" and "server exited" in run["error"]
    assert kept >= 2
    assert f"kept {kept} of" in stderr
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    entry = journal[journal.index(f"### Run {run['id']}: Eval") :]
    assert entry.splitlines()[0].endswith("[failed]")
    assert f"**Kept:** {kept} of {len(load_suite('baseline').prompts)} prompt results" in entry


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_eval_stops_its_server_and_says_so(signum, tiny_model, isolated_ledger):
    process = start_eval("concurrency=1", "max_tokens=512")
    try:
        server_pid, _ = wait_for(
            lambda: server_pid_and_results(isolated_ledger), "its server and 2 results"
        )
        process.send_signal(signum)
        _, stderr = communicate(process)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.splitlines()[-1] == (
        f"interrupted; what was done so far is recorded in {isolated_ledger}"
    )
    [run] = list(Database(isolated_ledger)["runs"].rows)
    assert run["status"] == "interrupted"
    wait_for(lambda: not pid_alive(server_pid), f"its server {server_pid} to end", 60)


def test_sigterm_to_just_reaches_the_eval_and_stops_its_server(tiny_model, isolated_ledger):
    just = Path(sys.executable).parent / "just"
    process = subprocess.Popen(
        [str(just), "eval", "concurrency=1", "max_tokens=512"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    try:
        server_pid, _ = wait_for(
            lambda: server_pid_and_results(isolated_ledger), "its server and 2 results"
        )
        process.terminate()
        communicate(process)
    finally:
        process.kill()
    [run] = list(Database(isolated_ledger)["runs"].rows)
    assert run["status"] == "interrupted"
    wait_for(lambda: not pid_alive(server_pid), f"its server {server_pid} to end", 60)
