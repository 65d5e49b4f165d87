"""What `just eval` says in the terminal: the settings that change what its numbers mean, its
progress in a log, and what a stopped run kept."""

import io
import signal
import subprocess
import sys
import time

import pytest
from helpers import run_just
from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.eval.progress import LogProgress
from labbench.serving.replay import replay_server


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_every_tenth_or_every_30_s():
    clock, out = Clock(), io.StringIO()
    progress = LogProgress(40, out=out, clock=clock)
    for n in range(1, 41):
        clock.now += 1
        progress.update(failed=n in (3, 7))
        if n == 20:  # a slow stretch: no result for 31 s
            clock.now += 31
            progress.tick()
    assert out.getvalue().splitlines() == [
        "prompts: 4/40 done, 1 failed, about 36 s left",
        "prompts: 8/40 done, 2 failed, about 32 s left",
        "prompts: 12/40 done, 2 failed, about 28 s left",
        "prompts: 16/40 done, 2 failed, about 24 s left",
        "prompts: 20/40 done, 2 failed, about 20 s left",
        "prompts: 20/40 done, 2 failed, about 51 s left",  # 30 s since the last line
        "prompts: 24/40 done, 2 failed, about 37 s left",
        "prompts: 28/40 done, 2 failed, about 25 s left",
        "prompts: 32/40 done, 2 failed, about 16 s left",
        "prompts: 36/40 done, 2 failed, about 7 s left",
        "prompts: 40/40 done, 2 failed, took 1m 11s",
    ]


@pytest.mark.timeout(60)
def test_the_header_and_the_score_table_say_what_was_run(isolated_ledger):
    with replay_server(lambda variant, question: "42") as url:
        result = run_just(
            "eval", f"url={url}", "limit=5", "epochs=2", "temperature=0.5", "seed=3",
            "max_tokens=8", timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    settings = "first 5 of 31 prompts, 2 epochs, temperature 0.5, seed 3, max_tokens 8, 1 server"
    assert f"\nsettings: {settings}\n" in result.stderr
    assert result.stdout.splitlines()[0] == f"baseline: {settings}"
    # stderr is a pipe here, as in a log: progress as lines, not a bar
    assert "\nprompts: 10/10 done, 0 failed, took " in result.stderr


@pytest.mark.timeout(60)
def test_ctrl_c_says_how_many_results_were_kept(isolated_ledger):
    def slow(variant: str, question: str) -> str:
        time.sleep(1)
        return "42"

    with replay_server(slow) as url:
        process = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "scripts" / "eval.py"), f"url={url}"]
            + ["concurrency=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 40
            while not kept_results(isolated_ledger) and time.monotonic() < deadline:
                time.sleep(0.2)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 130
    kept = kept_results(isolated_ledger)
    assert kept >= 1
    assert stderr.splitlines()[-2:] == [
        f"run 1 interrupted; kept {kept} of 31 results; `just eval resume=1` asks the rest",
        f"interrupted; what was done so far is recorded in {isolated_ledger}",
    ]


def kept_results(ledger) -> int:
    if not ledger.exists():
        return 0
    try:
        return Database(ledger)["eval_results"].count
    except Exception:  # the eval is creating the ledger
        return 0
