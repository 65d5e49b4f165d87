"""Helpers for tests that run the scripts as a user would."""

import os
import subprocess
import sys

from labbench import PROJECT_ROOT


def run_script(
    name: str, *args: str, timeout: float = 240, **kwargs
) -> subprocess.CompletedProcess:
    """Run scripts/<name>.py as a user would, with this test's environment."""
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / f"{name}.py"), *args],
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
