"""`just dummy-data` and `just check-data` as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_script

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.data.datacheck import require_trainable


def test_dummy_data_is_deterministic_and_says_its_checks(tmp_path):
    first = run_script("dummy_data", f"out={tmp_path / 'a'}", "n=50", "seed=3")
    second = run_script("dummy_data", f"out={tmp_path / 'b'}", "n=50", "seed=3")
    assert first.returncode == 0, first.stderr
    assert "leakage check: passed (0 of 50 examples near any of" in first.stdout
    assert "direct answers: 30%" in first.stdout
    for split in ("train", "valid", "test"):
        a = (tmp_path / "a" / f"{split}.jsonl").read_bytes()
        assert a == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]  # fingerprint
    checked = run_script("check_data", str(tmp_path / "a"))
    assert checked.returncode == 0
    assert checked.stdout.strip() == "ok: 40 train, 5 valid, 5 test examples"


def test_check_data_reports_every_problem_by_file_and_line(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"messages": [{"role": "robot", "content": "x"}, good["messages"][1]]}),
        json.dumps({"messages": [{"role": "user", "content": ""}, good["messages"][1]]}),
        json.dumps({"messages": [good["messages"][0]]}),
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "valid.jsonl").write_text("")
    result = run_script("check_data", str(tmp_path))
    assert result.returncode == 1
    out = result.stdout.splitlines()
    train = tmp_path / "train.jsonl"
    assert any(line.startswith(f"{train}:2: bad JSON") for line in out)
    assert any(line.startswith(f"{train}:3: ") and "'robot'" in line for line in out)
    assert any(line.startswith(f"{train}:4: ") and "empty" in line for line in out)
    assert any(line.startswith(f"{train}:5: ") and "assistant" in line for line in out)
    assert not any(f"{train}:1:" in line for line in out)
    assert result.stderr.strip().startswith("error: ")


def test_check_data_empty_train_split(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    result = run_script("check_data", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path / 'train.jsonl'}:1: empty train split" in result.stdout


def test_dummy_data_rejects_bad_flags(tmp_path):
    result = run_script("dummy_data", f"out={tmp_path}", "n=3")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: --n must be at least 10")
    missing = run_script("dummy_data", f"out={tmp_path}", "suite=nope")
    assert (
        missing.returncode == 1 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    )


EXAMPLE = json.dumps(
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
)
# Folders as {file name: its text}: check-data and train must pass or fail each alike.
FOLDERS = {
    "complete": {"train.jsonl": EXAMPLE + "\n", "valid.jsonl": EXAMPLE + "\n"},
    "no_train": {"valid.jsonl": EXAMPLE + "\n"},
    "no_valid": {"train.jsonl": EXAMPLE + "\n"},
    "empty_valid": {"train.jsonl": EXAMPLE + "\n", "valid.jsonl": ""},
    "empty_test": {"train.jsonl": EXAMPLE + "\n", "valid.jsonl": EXAMPLE + "\n", "test.jsonl": ""},
    "malformed_line": {"train.jsonl": f"{EXAMPLE}\n{{oops\n", "valid.jsonl": EXAMPLE + "\n"},
}


def write_folder(folder, files: dict[str, str]):
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("name", FOLDERS)
def test_check_data_and_train_accept_and_reject_the_same_folders(tmp_path, name):
    folder = write_folder(tmp_path / name, FOLDERS[name])
    checked = run_script("check_data", str(folder))
    try:
        require_trainable(folder)  # what scripts/train.py's check_data() applies
        trains = None
    except UserError as error:
        trains = str(error)
    assert (checked.returncode == 0) == (trains is None) == (name == "complete")
    if trains is not None:
        assert trains.startswith(checked.stdout.splitlines()[0])  # the same first problem


@pytest.mark.timeout(120)
def test_train_rejects_a_folder_without_valid_before_training(tmp_path, tiny_model):
    folder = write_folder(tmp_path / "data", FOLDERS["no_valid"])
    ledger = tmp_path / "train-ledger.db"
    just = Path(sys.executable).with_name("just")
    trained = subprocess.run(
        [str(just), "train", f"data={folder}", f"model={tiny_model}", f"ledger={ledger}"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=PROJECT_ROOT,
        env=os.environ | {"LABBENCH_OPENBLAS": "0"},
    )
    checked = run_script("check_data", str(folder))
    assert trained.returncode == 1 == checked.returncode
    message = f"{folder / 'valid.jsonl'}: missing (training validates on the valid split)"
    assert trained.stderr.strip() == f"error: {message}"
    assert checked.stdout.strip() == message
    assert not ledger.exists()  # it failed before a run was recorded
