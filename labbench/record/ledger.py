"""The ledger: every run, good or failed, in one SQLite file (sqlite-utils, WAL mode).

A run row is inserted as `running` before any work starts, each result is written as it
completes, and the status is finalised on every exit path. The schema is in schema.py.
"""

import fcntl
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Generator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.core.paths import INVOCATION_DIR_ENV
from labbench.machine.blas import resolve_blas
from labbench.machine.hardware import gather_hardware
from labbench.record.migrations import migrations
from labbench.record.plaindb import LedgerDatabase


def resolve_path(path: Path) -> Path:
    return path.expanduser().resolve()


def open_ledger(path: Path) -> Database:
    """Open (creating if needed) and migrate the ledger at `path` for recording.

    A directory, a file that is not SQLite, a corrupt database or a read-only file or folder
    is a UserError naming the path, raised before anything is written to it.
    """
    path = resolve_path(path)
    _check_is_database(path)
    _check_writable(path)
    try:
        db = LedgerDatabase(path)
        db.execute("PRAGMA busy_timeout = 10000")  # Datasette or another run may hold the lock
        db.execute("PRAGMA foreign_keys = ON")
        if db.journal_mode != "wal" or migrations.pending(db):
            # Two runs starting on a new ledger would both migrate: one at a time.
            with _exclusive_lock(path):
                db.enable_wal()
                migrations.apply(db)
    except sqlite3.DatabaseError as error:
        raise UserError(f"ledger {path} is corrupt ({error})") from None
    return db


@contextmanager
def _exclusive_lock(path: Path) -> Generator[None, None, None]:
    """An advisory lock on a file beside the ledger, held by one process at a time."""
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class ReadOnlyLedger(UserError):
    """The ledger file or its folder cannot be written; reading it still works."""


def open_ledger_for_reading(path: Path) -> Database:
    """The ledger for commands that only read: a writable one as usual (migrated), a read-only
    one without writing anything; it must be up to date then."""
    path = resolve_path(path)
    try:
        return open_ledger(path)
    except ReadOnlyLedger:  # open_ledger found it a sound database before it found it read-only
        db = Database(sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False))
        try:
            pending = migrations.pending(db)
        except sqlite3.DatabaseError as error:
            raise UserError(f"ledger {path} is corrupt ({error})") from None
        if pending:
            raise UserError(
                f"ledger {path} is read-only and was written by an older labbench: "
                "open it once with write access to upgrade it"
            ) from None
        return db


def _check_is_database(path: Path) -> None:
    """Through SQLite, never a plain open(): on Linux, closing any handle to a file drops every
    SQLite lock this process holds on it, so a connection still open here would lose its
    locks, and another process closing the ledger would then checkpoint and delete the WAL
    under it (its later writes lost)."""
    if path.is_dir():
        raise UserError(f"ledger {path} is a directory, not a database file")
    if not path.is_file() or path.stat().st_size == 0:
        return
    # Every page, through a read-only connection that writes nothing: corruption in pages a
    # run never reads would otherwise let it record into a damaged file (~0.2 s at 10,000
    # runs).
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as error:
        if str(error) == "file is not a database":  # SQLITE_NOTADB: not SQLite's header
            raise UserError(
                f"ledger {path} is not a SQLite database; it was left untouched"
            ) from None
        problems = [str(error)]
    if problems != ["ok"]:
        found = "; ".join(line.strip() for problem in problems for line in problem.splitlines())
        raise UserError(f"ledger {path} is corrupt ({found}); it was left untouched")


def _check_writable(path: Path) -> None:
    """Recording needs the file and its folder (WAL files beside it) to be writable. Tried for
    real, not with os.access (root passes that for read-only files), and on the ledger itself
    through SQLite (see _check_is_database): a write in a transaction that is rolled back
    (in WAL mode beginning one writes nothing yet)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise ReadOnlyLedger(
            f"ledger {path}: its folder {path.parent} is read-only ({error.strerror}); "
            "pass --ledger PATH somewhere writable"
        ) from None
    if not path.is_file():
        return
    try:
        with closing(
            sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10, isolation_level=None)
        ) as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(f"PRAGMA user_version = {int(version)}")
            finally:
                connection.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        if "readonly" not in str(error):  # SQLITE_READONLY: "attempt to write a readonly ..."
            raise
        raise ReadOnlyLedger(f"ledger {path} is read-only: nothing can be recorded in it") from None


def journal_dir(ledger: Path) -> Path:
    """The journal lives in `journal/` beside the ledger file."""
    return resolve_path(ledger).parent / "journal"


def adapters_dir(ledger: Path) -> Path:
    """Trained adapters live in `adapters/<run-id>/` beside the ledger, like the journal."""
    return resolve_path(ledger).parent / "adapters"


def models_dir(ledger: Path) -> Path:
    """Fused models live in `models/fused-<run-id>/` beside the ledger, like the adapters."""
    return resolve_path(ledger).parent / "models"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_hardware() -> dict[str, Any]:
    """This machine and the BLAS the processes labbench starts for a run will use."""
    blas = resolve_blas()
    return gather_hardware(blas.name, str(blas.library) if blas.library else None)


def provenance() -> dict[str, Any]:
    """Where a run came from: code version, software versions and hardware (no mlx import)."""
    # Untracked files count as dirty (ignored ones, such as the ledger, do not): a run made
    # with a new, uncommitted script cannot be reproduced from the commit alone.
    status = _git("status", "--porcelain")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else int(bool(status)),
        "python_version": platform.python_version(),
        "mlx_version": _version("mlx"),
        "mlx_lm_version": _version("mlx-lm"),
        "platform": f"{platform.system()}-{platform.machine()}",
        "hardware": run_hardware(),
    }


def dataset_of_adapter(db: Database, adapter: str | None) -> str | None:
    """Lineage: the dataset of the training run that wrote this adapter (or a checkpoint in it)."""
    if not adapter:
        return None
    rows = db.query(
        "SELECT dataset FROM runs WHERE kind = 'train' AND adapter IS NOT NULL "
        "AND (:adapter = adapter OR :adapter LIKE adapter || '/%') ORDER BY id DESC LIMIT 1",
        {"adapter": adapter},
    )
    return next((row["dataset"] for row in rows), None)


def dataset_of_fused_model(db: Database, model: str | None) -> str | None:
    """Lineage: the dataset of the adapter fused into this model (a `just fuse` output)."""
    rows = db.query(
        "SELECT runs.dataset FROM fuses JOIN runs ON runs.id = fuses.fuse_run_id"
        " WHERE fuses.output = ? ORDER BY fuses.fuse_run_id DESC LIMIT 1",
        [model],
    )
    return next((row["dataset"] for row in rows), None)


def id_list(ids: list[int]) -> str:
    """`(?, ?, ...)` for `run_id IN ...`: SQLite narrows the ledger's views to the given runs
    for a list of values, not for a subquery, and the journal reads only the runs it shows."""
    return "(" + ", ".join("?" * len(ids)) + ")" if ids else "(NULL)"


def scores_of_runs(db: Database, run_ids: list[int]) -> dict[int, dict]:
    """Eval run id -> its scores, as the category_scores and eval_summaries views define them
    (a prompt's score is the mean of its epochs, a category's the mean of its prompts, overall
    the mean of the categories, success rate over samples): {"categories": {category: {score,
    prompts, failures}}, "overall", "prompts", "failures", "success_rate"}. Grouped here from
    prompt_scores, because SQLite narrows that view to the runs asked for but computes the
    views built on it for the whole ledger. tests/test_journal.py keeps the two in agreement.
    Runs without results are left out."""
    if not run_ids:
        return {}
    ids = id_list(run_ids)
    scores: dict[int, dict] = {}
    for row in db.query(
        "SELECT run_id, category, AVG(score) AS score, COUNT(*) AS prompts,"
        " SUM(failures > 0) AS failures, SUM(samples) AS samples,"
        " SUM(failures) AS failed_samples"
        f" FROM prompt_scores WHERE run_id IN {ids} GROUP BY run_id, category ORDER BY run_id",
        run_ids,
    ):
        run = scores.setdefault(row["run_id"], {"categories": {}, "samples": 0, "failed": 0})
        run["categories"][row["category"]] = {
            key: row[key] for key in ("run_id", "category", "score", "prompts", "failures")
        }
        run["samples"] += row["samples"]
        run["failed"] += row["failed_samples"]
    for run in scores.values():
        categories = run["categories"].values()
        means = [c["score"] for c in categories if c["score"] is not None]
        run["overall"] = sum(means) / len(means) if means else None
        run["prompts"] = sum(c["prompts"] for c in categories)
        run["failures"] = sum(c["failures"] for c in categories)
        run["success_rate"] = (run["samples"] - run.pop("failed")) / run["samples"]
    return scores


def run_scores(db: Database, run_id: int) -> dict | None:
    """An eval run's scores (scores_of_runs, never a stored copy): overall, success rate,
    prompts, failures, categories {name: score}, and the stored 95% CI of overall and pass@k
    ({"1": ..., "5": ...}, with repeats only). None when the run has no results."""
    found = scores_of_runs(db, [run_id]).get(run_id)
    if found is None:
        return None
    stored = json.loads(db.table("runs").get(run_id)["summary"] or "{}")
    return {
        "overall": found["overall"],
        "success_rate": found["success_rate"],
        "prompts": found["prompts"],
        "failures": found["failures"],
        "categories": {name: c["score"] for name, c in sorted(found["categories"].items())},
        "ci_low": stored.get("overall_ci_low"),
        "ci_high": stored.get("overall_ci_high"),
        "ci_method": stored.get("overall_ci_method"),
        "pass_at_k": stored.get("pass_at_k") or {},
        "bfcl": stored.get("bfcl"),  # the leaderboard's summaries of a BFCL run
    }


def command_line() -> list[str]:
    """The command as the user typed it: `just eval model=...` when the justfile ran the script
    (recipe names are the script names with dashes), else this process's argv."""
    script = Path(sys.argv[0]).resolve()
    if os.environ.get(INVOCATION_DIR_ENV) and script.parent.parent == PROJECT_ROOT:
        return ["just", script.stem.replace("_", "-"), *sys.argv[1:]]
    if script.is_relative_to(PROJECT_ROOT):
        return ["python", str(script.relative_to(PROJECT_ROOT)), *sys.argv[1:]]
    return [sys.argv[0], *sys.argv[1:]]


@dataclass
class Run:
    """A run being recorded. Use `recording_run()` so the status is always finalised."""

    db: Database
    id: int

    def update(self, **values: Any) -> None:
        self.db.table("runs").update(self.id, _encode(values))

    def add_eval_result(self, row: dict[str, Any], ignore: bool = False) -> None:
        self.db.table("eval_results").insert(_encode({"run_id": self.id, **row}), ignore=ignore)


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
        for key, value in values.items()
    }


def start_run(db: Database, kind: str, config: dict[str, Any], **columns: Any) -> Run:
    row = {
        "kind": kind,
        "status": "running",
        "started_at": now(),
        "command": command_line(),
        "config": config,
        **provenance(),
        **columns,
    }
    run_id = db.table("runs").insert(_encode(row)).last_pk
    assert isinstance(run_id, int)
    return Run(db, run_id)


def finish_run(run: Run, status: str, error: str | None = None, **columns: Any) -> None:
    started = run.db.table("runs").get(run.id)["started_at"]
    finished = now()
    duration = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    run.update(status=status, error=error, finished_at=finished, duration_s=duration, **columns)


@contextmanager
def recording_run(
    db: Database, kind: str, config: dict[str, Any], **columns: Any
) -> Generator[Run, None, None]:
    """Insert a `running` run; finalise it as ok, failed or interrupted however the block ends.

    An exception marks the run `failed` with its message; Ctrl-C or SIGTERM (see
    cli.raise_keyboard_interrupt_on_sigterm) marks it `interrupted`. Exceptions propagate.
    """
    run = start_run(db, kind, config, **columns)
    with finalising(run):
        yield run


@contextmanager
def finalising(run: Run) -> Generator[None, None, None]:
    """Finish `run` as ok, failed or interrupted however the block ends (see recording_run)."""
    try:
        yield
    except KeyboardInterrupt:
        finish_run(run, "interrupted", "interrupted by the user (Ctrl-C or SIGTERM)")
        raise
    except BaseException as error:
        finish_run(run, "failed", _one_line(error))
        raise
    else:
        finish_run(run, "ok")


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    if isinstance(error, UserError) and lines:
        return lines[0]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def paired_scores(db: Database, a: int, b: int) -> tuple[list[float], list[float]]:
    """Per-prompt scores (prompt_scores) of the prompts both runs scored, in prompt-id order."""
    rows = list(
        db.query(
            "SELECT a.score AS a, b.score AS b FROM prompt_scores AS a JOIN prompt_scores AS b"
            " ON b.prompt_id = a.prompt_id AND b.run_id = ? WHERE a.run_id = ?"
            " AND a.score IS NOT NULL AND b.score IS NOT NULL ORDER BY a.prompt_id",
            [b, a],
        )
    )
    if not rows:
        raise UserError(f"runs {a} and {b} share no scored prompts")
    return [r["a"] for r in rows], [r["b"] for r in rows]
