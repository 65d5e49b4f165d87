"""What the README and metadata.yaml say about the code, checked against the code."""

import re

import yaml
from helpers import run_main

from labbench import PROJECT_ROOT
from labbench.train.distributed import LAUNCH_LOG, SPEC_FILE
from labbench.train.fusemodel import BITS_CHOICES

README = (PROJECT_ROOT / "README.md").read_text()


def test_the_launch_files_the_readme_names_exist():
    named = set(re.findall(r"launch/([\w.<>-]+)", README))
    assert LAUNCH_LOG in named
    assert named <= {LAUNCH_LOG, SPEC_FILE}, named


def test_the_readme_and_fuse_help_list_the_bits_fuse_takes():
    [listed] = re.findall(r"bits=((?:\d+\\\|)+\d+)", README)
    assert tuple(int(bits) for bits in listed.split("\\|")) == BITS_CHOICES
    help_text = " ".join(run_main("fuse", "--help").stdout.split())
    assert f"quantize the fused model: {', '.join(map(str, BITS_CHOICES))}" in help_text


def test_metadata_says_untracked_files_make_a_run_dirty():
    """ledger.provenance counts untracked files (`git status --porcelain`), as it should."""
    metadata = yaml.safe_load((PROJECT_ROOT / "metadata.yaml").read_text())
    [database] = metadata["databases"].values()
    described = database["tables"]["runs"]["columns"]["git_dirty"]
    assert "untracked files included" in described
