"""The ledger's door: what opening it may not do to connections already open, and what
reaches it."""

import subprocess
import sys
from pathlib import Path

import pytest

from labbench.core.errors import UserError
from labbench.record.ledger import open_ledger, recording_run, start_run

COUNT_RUNS = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('{}').fetchone()[0])"


def runs_seen_by_another_process(path: Path) -> int:
    """Open, read and close the ledger in a process of its own: the last one to close a WAL
    database checkpoints it and deletes its WAL, unless another process still holds it."""
    result = subprocess.run(
        [sys.executable, "-c", COUNT_RUNS.format("SELECT COUNT(*) FROM runs"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(result.stdout)


def test_opening_the_ledger_again_keeps_the_locks_of_a_connection_already_open(tmp_path):
    path = tmp_path / "ledger.db"
    held = open_ledger(path)
    start_run(held, "eval", {}, model="first")
    # A plain open() and close() of the file here would drop `held`'s SQLite locks (Linux
    # releases all of a process's POSIX locks on a file when any handle to it closes) ...
    open_ledger(path).close()
    # ... so this process, closing last, would delete the WAL under `held` ...
    assert runs_seen_by_another_process(path) == 1
    assert Path(f"{path}-wal").exists()
    # ... and `held`'s next run would go into the deleted WAL, seen by nobody else.
    start_run(held, "eval", {}, model="second")
    assert runs_seen_by_another_process(path) == 2
    held.close()


def test_terminal_escapes_never_reach_the_ledger(tmp_path):
    """What mlx.launch printed last reached runs.error, and from there the journal."""
    db = open_ledger(tmp_path / "ledger.db")
    warning = "\x1b[33m[WARN] Node with rank 0 exited with code 1 \x1b[0m"
    with pytest.raises(UserError), recording_run(db, "train", {}, model="m") as run:
        raise UserError(f"rank 0: left no status (launch log: {warning})")
    assert db.table("runs").get(run.id)["error"] == (
        "rank 0: left no status (launch log: [WARN] Node with rank 0 exited with code 1 )"
    )
    # Any table, inserted or updated, by whichever code writes it.
    db.table("run_notes").insert({"run_id": run.id, "kind": "note", "text": "\x1b[1mbold\x1b[0m"})
    run.update(note="\x1b]0;title\x07a \x1b(Bnote")
    assert [r["text"] for r in db.query("SELECT text FROM run_notes")] == ["bold"]
    assert db.table("runs").get(run.id)["note"] == "a note"
