"""Every door answers clearly: flags, ledger files, model and adapter paths (fast, in-process)."""

import argparse
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers import communicate, run_main
from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.core.cli import expand_key_values, ledger_path, parse_args
from labbench.core.errors import UserError
from labbench.core.paths import INVOCATION_DIR_ENV, user_path
from labbench.record.ledger import open_ledger, open_ledger_for_reading, start_run
from labbench.serving.server import check_adapter, looks_local, resolve_model


def test_key_value_becomes_a_flag_only_for_the_recipes_own_options():
    options = {"--model", "--served-model", "--ledger"}
    words = ["model=x", "served_model=y", "lr=3e-4 was too high", "7", "--ledger", "a=b.db"]
    assert expand_key_values(words, options) == [
        "--model",
        "x",
        "--served-model",
        "y",
        "lr=3e-4 was too high",
        "7",
        "--ledger",
        "a=b.db",
    ]


def test_a_note_may_contain_key_value_text(isolated_ledger):
    db = open_ledger(isolated_ledger)
    run_id = start_run(db, "eval", {}).id
    result = run_main("note", str(run_id), "lr=3e-4 was too high")
    assert result.returncode == 0, result.stderr
    [note] = list(db.query("SELECT text FROM run_notes"))
    assert note["text"] == "lr=3e-4 was too high"


def test_an_unknown_key_is_named_in_one_line(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    with pytest.raises(SystemExit) as exit_:
        parse_args(parser, ["modle=x"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: unknown option 'modle' in 'modle=x' (see --help)\n"


@pytest.mark.parametrize("script", ["eval", "serve", "train", "bench", "browse"])
@pytest.mark.parametrize(
    ("word", "why"),
    [("99999", "a port is 1-65535, got 99999"), ("0", "a port is 1-65535, got 0"),
     ("x", "expected a port number, got 'x'")],
)  # fmt: skip
def test_a_port_out_of_range_is_a_bad_flag_before_anything_runs(script, word, why, tmp_path):
    ledger = tmp_path / "ledger.db"
    result = run_main(script, f"port={word}", "--ledger", str(ledger))
    assert (result.returncode, result.stderr) == (
        2,
        f"error: argument --port: {why} (see --help)\n",
    )
    assert not ledger.exists()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corrupt_copy(tmp_path: Path) -> Path:
    """A real ledger whose schema page is overwritten: the SQLite header is intact."""
    good = tmp_path / "good.db"
    open_ledger(good).close()
    bad = tmp_path / "corrupt.db"
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda tmp: (tmp / "dir.db").mkdir() or tmp / "dir.db", "is a directory"),
        (lambda tmp: (tmp / "t.db").write_text("notes") and tmp / "t.db", "not a SQLite database"),
        (corrupt_copy, "is corrupt"),
    ],
)
def test_a_bad_ledger_file_is_named_and_left_untouched(tmp_path, make, words):
    path = make(tmp_path)
    before = digest(path) if path.is_file() else None
    for opener in (open_ledger, open_ledger_for_reading):
        with pytest.raises(UserError) as caught:
            opener(path)
        assert str(path) in str(caught.value) and words in str(caught.value)
        assert "\n" not in str(caught.value)
    if before:
        assert digest(path) == before
    result = run_main("journal", f"ledger={path}")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and words in result.stderr


@pytest.fixture
def immutable(tmp_path):
    """`chattr +i`: read-only even for root, which ignores file modes. Undone at teardown."""
    marked: list[Path] = []

    def mark(path: Path) -> Path:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("chattr +i is not available here")
        marked.append(path)
        return path

    yield mark
    for path in reversed(marked):
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_ledger_is_refused_for_recording_and_read_for_reading(tmp_path, immutable):
    path = tmp_path / "ledger.db"
    db = open_ledger(path)
    start_run(db, "eval", {}, model="m")
    db.close()
    immutable(path)
    before = digest(path)
    with pytest.raises(UserError, match=f"ledger {path} is read-only"):
        open_ledger(path)
    reader = open_ledger_for_reading(path)
    assert [r["model"] for r in reader.query("SELECT model FROM runs")] == ["m"]
    with pytest.raises(sqlite3.OperationalError):
        reader.execute("DELETE FROM runs")
    reader.close()
    out = tmp_path / "elsewhere"
    result = run_main("journal", f"ledger={path}", f"out={out}")
    assert result.returncode == 0, result.stderr
    assert (out / "JOURNAL.md").is_file()
    assert digest(path) == before


def test_a_ledger_in_a_read_only_folder_names_the_folder(tmp_path, immutable):
    folder = tmp_path / "locked"
    folder.mkdir()
    immutable(folder)
    with pytest.raises(UserError) as caught:
        open_ledger(folder / "ledger.db")
    assert f"its folder {folder} is read-only" in str(caught.value)
    assert not (folder / "ledger.db").exists()


def test_paths_are_relative_to_where_the_user_ran_just(tmp_path, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    monkeypatch.setenv(INVOCATION_DIR_ENV, str(tmp_path))
    assert user_path("data/mine") == tmp_path / "data/mine"
    assert user_path("/abs/path") == Path("/abs/path")
    (tmp_path / "adapters" / "3").mkdir(parents=True)
    with pytest.raises(UserError) as caught:
        check_adapter("adapters/3")
    assert (
        str(caught.value)
        == f"--adapter adapters/3: no adapter_config.json in {tmp_path}/adapters/3"
    )
    with pytest.raises(UserError) as caught:
        check_adapter("adapters/999")
    assert (
        str(caught.value) == f"--adapter adapters/999: no such directory ({tmp_path}/adapters/999)"
    )
    shutil.copytree(PROJECT_ROOT / "models" / "tiny-chat", tmp_path / "mine")
    assert resolve_model("mine") == str(tmp_path / "mine")


@pytest.mark.parametrize(
    "model, local",
    [
        ("mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit", False),
        ("Qwen/Qwen2.5-Coder-7B", False),
        ("./x", True),
        ("/x/y", True),
        ("~/models/x", True),
        ("a/b/c", True),
        ("models/does-not-exist", True),  # `models` is a folder in the project
        ("adapters_like/x", False),
    ],
)
def test_clearly_local_paths_never_go_to_the_hub(model, local, tmp_path, monkeypatch):
    monkeypatch.setenv(INVOCATION_DIR_ENV, str(tmp_path))
    assert looks_local(model) is local
    if local:
        with pytest.raises(UserError, match="no such directory"):
            resolve_model(model)
    else:
        assert resolve_model(model) == model


def test_a_missing_model_fails_before_any_run_or_server(isolated_ledger):
    result = run_main("eval", "model=models/does-not-exist")
    assert result.returncode == 1
    assert result.stderr == (
        "error: --model models/does-not-exist: no such directory "
        f"({Path.cwd()}/models/does-not-exist)\n"
    )
    assert not isolated_ledger.exists()


JUST = Path(sys.executable).parent / "just"


@pytest.mark.slow("a tiny-model server (just eval through the justfile)")
@pytest.mark.timeout(300)
def test_the_recorded_command_is_what_the_user_typed(tmp_path, tiny_model):
    """Through the real justfile, from another directory: the relative ledger path is the
    user's, and the run records `just eval ...`, not `python scripts/eval.py ...`."""
    env = {k: v for k, v in os.environ.items() if k not in ("LEDGER_DB", INVOCATION_DIR_ENV)}
    words = ["eval", "max_tokens=4", "--ledger", "mine.db", "--note", "lr=3e-4 felt high"]
    result = subprocess.run(
        [str(JUST), "--justfile", str(PROJECT_ROOT / "justfile"), *words],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stderr
    [run] = list(Database(tmp_path / "mine.db").query("SELECT command, note FROM runs"))
    assert json.loads(run["command"]) == ["just", *words]
    assert run["note"] == "lr=3e-4 felt high"
    journal = (tmp_path / "journal" / "JOURNAL.md").read_text()
    assert "just eval max_tokens=4 --ledger mine.db --note 'lr=3e-4 felt high'" in journal


@pytest.mark.slow("a tiny-model server (just serve)")
@pytest.mark.timeout(300)
def test_ctrl_c_stops_serve_cleanly(tiny_model):
    """Ctrl-C reaches the whole foreground group (just and the script): one line, exit 0."""
    process = subprocess.Popen(
        [str(JUST), "--justfile", str(PROJECT_ROOT / "justfile"), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        serving = process.stdout.readline()
        assert serving.startswith("serving "), process.communicate(timeout=30)
        server_url = serving.split(" at ")[1].split()[0]
        assert requests.get(f"{server_url}/health", timeout=10).status_code == 200
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = communicate(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr
    assert stderr.strip().splitlines()[-1] == "stopped the server"
    assert "error" not in stderr and "Traceback" not in stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server_url}/health", timeout=5)


def test_dummy_data_never_replaces_a_dataset_silently(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train.jsonl").write_text('{"precious": true}\n')
    result = run_main("dummy_data", f"out={mine}", "n=10")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {mine} already holds a dataset (train.jsonl): pass --force to replace it\n"
    )
    assert (mine / "train.jsonl").read_text() == '{"precious": true}\n'
    assert run_main("dummy_data", f"out={mine}", "n=10", "--force").returncode == 0
    assert "precious" not in (mine / "train.jsonl").read_text()


def test_ledger_db_is_from_the_users_directory_and_the_default_is_the_projects(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(INVOCATION_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("LEDGER_DB", "rel.db")
    assert ledger_path(None) == tmp_path / "rel.db"
    assert ledger_path("other.db") == tmp_path / "other.db"
    monkeypatch.delenv("LEDGER_DB")
    assert ledger_path(None) == PROJECT_ROOT / "ledger.db"


def test_ctrl_c_while_the_journal_is_written_keeps_the_run_and_says_so(
    isolated_ledger, monkeypatch
):
    db = open_ledger(isolated_ledger)
    run_id = start_run(db, "eval", {}).id

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("labbench.present.recording.write_journal", interrupted)
    result = run_main("note", str(run_id), "kept")
    assert result.returncode == 130
    assert result.stderr == (
        f"interrupted while writing the journal; the runs are recorded in {isolated_ledger}"
        " (`just journal` writes it again)\n"
    )
    assert [r["text"] for r in db.query("SELECT text FROM run_notes")] == ["kept"]
