"""Helpers for tests that run the scripts as a user would."""

import importlib.util
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import NoReturn

import pytest

from labbench import PROJECT_ROOT
from labbench.core import cli

SCRIPTS = PROJECT_ROOT / "scripts"
# Environment variable that marks every process one test starts: children inherit it (the
# servers a script starts too), so a test finds its own processes, whatever else runs beside it.
PROCESS_TAG = "LABBENCH_TEST_TAG"


SMALL_SUITE = """
name = "small"
[defaults]
max_tokens = MAX_TOKENS
tools = ["read_file"]
[tools.read_file]
description = "Read a text file."
parameters = { type = "object", properties = { path = { type = "string" } }, required = ["path"] }
[[prompts]]
id = "read"
category = "tool_calling"
prompt = "Read the file src/app.py."
expect_tools = [ { name = "read_file", arguments = { path = "src/app.py" } } ]
[[prompts]]
id = "math"
category = "reasoning"
prompt = "What is 6 times 7?"
expect_answer = "42"
"""


def write_echo_dataset(folder: Path, train: int, valid: int = 4) -> Path:
    """A chat dataset of short examples of one length ("Echo 007" -> "007 007"): cheap to
    train on, and data-parallel ranks get shares of as many tokens."""
    for split, count in (("train", train), ("valid", valid)):
        lines = [
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Echo {n:03d}"},
                        {"role": "assistant", "content": f"{n:03d} {n:03d}"},
                    ]
                }
            )
            for n in range(count)
        ]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def small_suite_toml(max_tokens: int) -> str:
    """A two-prompt suite (one tool call, one answer) for tests that need a quick real eval."""
    return SMALL_SUITE.replace("MAX_TOKENS", str(max_tokens))


# How long one script may run before a test calls it hung: only a guard against hangs, far
# above the slowest script a test runs (a training with checkpoint evals, ~1 min on 2 quiet
# cores, ~3 min on a loaded machine). The demo has its own.
HANG_S = 600
# "It failed without waiting": far above what a script that fails at once takes beside two CPU
# hogs (~15 s: Python, imports, the check), far below the waits it must not fall into (a server's
# 180 s startup timeout, a request's 300 s timeout).
NO_WAIT_S = 90


def run_guarded(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with output captured. A hang, by this guard or by the test's own pytest
    timeout, kills the process and fails the test naming the command, how long it ran and the
    end of what it printed."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        fail_hung(process, timeout)
    except pytest.fail.Exception as stopped:  # pytest-timeout's, raised in the main thread
        fail_hung(process, time.monotonic() - started, f"{stopped.msg}\n")
    finally:
        if process.poll() is None:  # Ctrl-C, or any other way out
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def hang_report(command, seconds: float, stdout, stderr) -> str:
    """What was running when a hang guard fired, and the last lines it printed."""

    def tail(output) -> str:
        text = output.decode(errors="replace") if isinstance(output, bytes) else output or ""
        return "\n".join(text.splitlines()[-15:]) or "(nothing)"

    return (
        f"hung: still running after {seconds:.0f} s (a guard against hangs, far above its "
        f"normal run), so it was killed: {shlex.join(map(str, command))}\n"
        f"--- its stdout, last lines ---\n{tail(stdout)}\n"
        f"--- its stderr, last lines ---\n{tail(stderr)}"
    )


def communicate(process: subprocess.Popen, timeout: float = HANG_S) -> tuple[str, str]:
    """Popen.communicate with the same hang guard as run_guarded."""
    started = time.monotonic()
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        fail_hung(process, timeout)
    except pytest.fail.Exception as stopped:
        fail_hung(process, time.monotonic() - started, f"{stopped.msg}\n")


def fail_hung(process: subprocess.Popen, seconds: float, why: str = "") -> NoReturn:
    """Kill a process that ran `seconds` too long and fail the test saying what it was."""
    process.kill()
    stdout, stderr = process.communicate()
    report = why + hang_report(process.args, seconds, stdout, stderr)
    raise pytest.fail.Exception(report, pytrace=False) from None


def run_script(
    name: str, *args: str, timeout: float = HANG_S, **kwargs
) -> subprocess.CompletedProcess:
    """Run scripts/<name>.py as a user would, with this test's environment."""
    return run_guarded(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *args],
        timeout,
        cwd=kwargs.pop("cwd", PROJECT_ROOT),
        env=kwargs.pop("env", os.environ.copy()),
        **kwargs,
    )


def wait_for(condition: Callable, what: str, timeout: float = HANG_S, interval: float = 0.1):
    """condition()'s first true value, polled; fails saying what it waited for, should that
    not come within `timeout` (a guard against hangs, far above the normal wait)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"still waiting after {timeout:g} s for {what}"
        time.sleep(interval)
    return value


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def load_script(name: str):
    """scripts/<name>.py as a module, to call its functions."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run scripts/<name>.py's main in this process, the way `cli.run` does: the same exit
    code and output as `run_script`, without a new interpreter (for in-process scripts)."""
    module = load_script(name)
    out, err = io.StringIO(), io.StringIO()
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cli.run(lambda: module.main(list(args)))
    except SystemExit as exit_:
        code = exit_.code
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    assert isinstance(code, int)
    return subprocess.CompletedProcess([name, *args], code, out.getvalue(), err.getvalue())


def run_just(recipe: str, *args: str, timeout: float = HANG_S) -> subprocess.CompletedProcess:
    """Run `just RECIPE ARGS` as a user types it, with the just installed beside this Python."""
    just = os.path.join(os.path.dirname(sys.executable), "just")
    return run_guarded([just, recipe, *args], timeout, cwd=PROJECT_ROOT, env=os.environ.copy())


# --- the processes a test started ----------------------------------------------------------


def tagged_processes() -> list[str]:
    """`pid args` of the live processes that carry this test's tag (conftest's `process_tag`)."""
    marker = f"{PROCESS_TAG}={os.environ[PROCESS_TAG]}"
    env = {k: v for k, v in os.environ.items() if k != PROCESS_TAG}  # ps itself is not ours
    with_env = subprocess.run(
        ["ps", "axeww", "-o", "pid=,args="], capture_output=True, text=True, env=env, timeout=60
    ).stdout
    pids = [line.split()[0] for line in with_env.splitlines() if marker in line]
    pids = [pid for pid in pids if int(pid) != os.getpid()]
    if not pids:
        return []
    shown = subprocess.run(  # without the environment, which is nobody's business
        ["ps", "-o", "pid=,args=", "-p", ",".join(pids)], capture_output=True, text=True, timeout=60
    ).stdout
    return [line.strip() for line in shown.splitlines()]


def assert_nothing_left(grace_s: float = 30) -> None:
    """No process this test started is alive: none of its scripts, none of their servers.
    `grace_s` lets signals already sent land; it only bounds the wait for a leftover."""
    deadline = time.monotonic() + grace_s
    while left := tagged_processes():
        assert time.monotonic() < deadline, f"processes left behind: {left}"
        time.sleep(0.2)


def interrupt_training(ledger, *args: str, timeout: float = HANG_S) -> tuple[int, str]:
    """Start scripts/train.py ARGS, send Ctrl-C once its first checkpoint (adapters/1) is
    saved; returns its exit code and stderr."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "train.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    adapter = ledger.parent / "adapters" / "1"
    try:
        deadline = time.monotonic() + timeout
        while not (adapter / "adapters.safetensors").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint was saved"
            time.sleep(0.2)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, stderr = communicate(process)
    finally:
        process.kill()
    return process.returncode, stderr
