"""Helpers for tests that run the scripts as a user would."""

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from labbench import PROJECT_ROOT
from labbench.core import cli

SCRIPTS = PROJECT_ROOT / "scripts"
PROCESS_TAG = "LABBENCH_TEST_TAG"  # environment variable marking the processes of one test


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


def run_script(
    name: str, *args: str, timeout: float = 240, **kwargs
) -> subprocess.CompletedProcess:
    """Run scripts/<name>.py as a user would, with this test's environment."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kwargs.pop("cwd", PROJECT_ROOT),
        env=kwargs.pop("env", os.environ.copy()),
        **kwargs,
    )


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


def run_just(recipe: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `just RECIPE ARGS` as a user types it, with the just installed beside this Python."""
    just = os.path.join(os.path.dirname(sys.executable), "just")
    return subprocess.run(
        [just, recipe, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
    )


def tagged_processes() -> list[str]:
    """`pid args` of the live processes that carry this test's tag (the `process_tag` fixture):
    the ones it started, and theirs, whatever else runs on the machine."""
    marker = f"{PROCESS_TAG}={os.environ[PROCESS_TAG]}"
    env = {k: v for k, v in os.environ.items() if k != PROCESS_TAG}  # ps itself is not ours
    with_env = subprocess.run(
        ["ps", "axeww", "-o", "pid=,args="], capture_output=True, text=True, env=env
    ).stdout
    pids = [line.split()[0] for line in with_env.splitlines() if marker in line]
    pids = [pid for pid in pids if int(pid) != os.getpid()]
    if not pids:
        return []
    shown = subprocess.run(  # without the environment, which is nobody's business
        ["ps", "-o", "pid=,args=", "-p", ",".join(pids)], capture_output=True, text=True
    ).stdout
    return [line.strip() for line in shown.splitlines()]
