"""Paths as the user typed them: relative ones are from the directory they ran `just` in.

Recipes run in the project root (so `suites/` and `models/` are found), and the justfile
passes the user's own directory in LABBENCH_INVOCATION_DIR.
"""

import os
from pathlib import Path

INVOCATION_DIR_ENV = "LABBENCH_INVOCATION_DIR"


def invocation_dir() -> Path:
    """Where the user ran the command: the justfile says so; else the working directory."""
    return Path(os.environ.get(INVOCATION_DIR_ENV) or os.getcwd())


def user_path(text: str | Path) -> Path:
    """A path as the user typed it, made absolute from the directory they ran `just` in."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else invocation_dir() / path
