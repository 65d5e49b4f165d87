"""The package's structure is kept by lint-imports (pyproject.toml [tool.importlinter]): these
tests prove the contracts pass today and fail when a forbidden import is added."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labbench import PROJECT_ROOT

LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LINT, "--no-logo", "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The package, scripts, benchmarks and contracts, copied where a change cannot hurt."""
    for name in ("labbench", "scripts", "benchmarks"):
        shutil.copytree(
            PROJECT_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")


def test_the_contracts_hold_on_the_project():
    result = lint_imports(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # a lower layer importing a higher one (the flag helpers writing the journal)
        ("labbench/core/cli.py", "from labbench.present import journal", "areas below it"),
        # two independent siblings
        ("labbench/present/cumulative.py", "from labbench.data import leakage", "areas below it"),
        ("scripts/note.py", "import scripts.eval", "never each other"),
        ("labbench/sandbox/sandbox_runner.py", "import requests", "standard library"),
        # inside train: the memory sub-area under everything, training.py over the preference one
        ("labbench/train/memory/plan.py", "from labbench.train import lora", "imports no training"),
        ("labbench/train/preference/rewards.py", "from labbench.train import training", "calls"),
        (
            "labbench/sandbox/sandbox_runner.py",
            "from labbench.core import errors",
            "standard library",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(project_copy, module, line, contract):
    assert lint_imports(project_copy).returncode == 0  # the copy is clean before the change
    add_line(project_copy / module, line)
    result = lint_imports(project_copy)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert len(broken) == 1 and contract in broken[0], result.stdout


def test_the_sandbox_runner_imports_only_the_standard_library():
    """Complete where the forbidden contract lists packages: every import the child makes."""
    tree = ast.parse((PROJECT_ROOT / "labbench/sandbox/sandbox_runner.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert imported and imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names
