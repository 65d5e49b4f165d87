"""Continuing a stopped run in its own row (`just eval resume=RUN`, `just train resume=RUN`):
which runs can be, and the `run_resumes` row that says when one was."""

from collections.abc import Generator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.record.ledger import Run, _encode, _git, command_line, finalising, now

RESUMABLE = ("interrupted", "failed")


def stopped_run(db: Database, run_id: int, kind: str) -> dict[str, Any]:
    """The runs row of a stopped `kind` run that can be resumed; UserError saying why not."""
    row = next(iter(db.query("SELECT * FROM runs WHERE id = ?", [run_id])), None)
    if row is None:
        raise UserError(f"resume={run_id}: the ledger has no run {run_id}")
    if row["kind"] != kind:
        raise UserError(f"resume={run_id}: run {run_id} is a {row['kind']} run, not an {kind}")
    if row["status"] == "ok":
        raise UserError(f"resume={run_id}: run {run_id} finished (ok); there is nothing to resume")
    if row["status"] not in RESUMABLE:
        raise UserError(
            f"resume={run_id}: run {run_id} is {row['status']}: another process may still be "
            "working on it"
        )
    return row


@contextmanager
def resuming_run(db: Database, run_id: int, kept: int) -> Generator[Run, None, None]:
    """Set a stopped run `running` again, record the resume, and finalise the run as ok,
    failed or interrupted however the block ends (as recording_run does for a new one)."""
    row = db.table("runs").get(run_id)
    resumed_at = now()
    db.table("run_resumes").insert(
        _encode(
            {
                "run_id": run_id,
                "resumed_at": resumed_at,
                "previous_status": row["status"],
                "previous_error": row["error"],
                "kept": kept,
                "command": command_line(),
                "git_commit": _git("rev-parse", "HEAD"),
            }
        )
    )
    run = Run(db, run_id)
    run.update(status="running", error=None, finished_at=None)
    try:
        with finalising(run):
            yield run
    finally:  # the run's duration: its earlier sessions' and this one's, not the pause between
        finished = db.table("runs").get(run_id)["finished_at"]
        session = datetime.fromisoformat(finished) - datetime.fromisoformat(resumed_at)
        run.update(duration_s=(row["duration_s"] or 0.0) + session.total_seconds())
