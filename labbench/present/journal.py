"""Render journal/JOURNAL.md from the ledger alone, in the shape of the reference journal.

The same ledger always gives the same bytes: nothing here reads the clock or the environment,
and every query has an explicit order. The Cumulative Results tables are rendered from the
ledger's `cumulative_results` view, so the ledger and the journal cannot disagree.

JOURNAL.md holds the cumulative tables and the newest entries; older entries move to archive
files, journal/archive/YYYY-MM.md (YYYY-MM-2.md, ... when a month has more than ARCHIVE_CHUNK
runs), written once and never again, so recording a run costs the same whatever the ledger's
size. An archive file is a run of consecutive runs of one month; it is sealed, and written,
once all its runs are older than the RECENT_ENTRIES newest and none is still running. Its
entries keep what each run recorded itself; notes added later with `just note` are listed in
JOURNAL.md under "Notes on archived runs" (and in the cumulative tables).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlite_utils import Database

from labbench.core.atomicfile import write_text_atomically
from labbench.present.bfcltables import journal_table
from labbench.present.cumulative import (
    cumulative_rows,
    cumulative_tables,
    id_list,
    identical_run_flags,
    model_name,
)
from labbench.present.entries import EntryData, render_entry
from labbench.present.sweepreport import sweep_sections

JOURNAL_NAME = "JOURNAL.md"
ARCHIVE_DIR_NAME = "archive"
RECENT_ENTRIES = 50  # at least this many newest entries stay in JOURNAL.md
ARCHIVE_CHUNK = 200  # runs per archive file at most


@dataclass
class Chunk:
    name: str  # file name in journal/archive/
    month: str
    run_ids: list[int] = field(default_factory=list)
    running: bool = False


def archive_chunks(runs: list[dict]) -> list[Chunk]:
    """Consecutive runs (by id) of the same month, ARCHIVE_CHUNK at most per chunk. Only
    appending runs changes the list, so a chunk's runs never change once a later one exists."""
    chunks: list[Chunk] = []
    per_month: dict[str, int] = defaultdict(int)
    for run in runs:
        month = (run["started_at"] or "")[:7] or "undated"
        if not chunks or chunks[-1].month != month or len(chunks[-1].run_ids) >= ARCHIVE_CHUNK:
            per_month[month] += 1
            part = per_month[month]
            chunks.append(Chunk(f"{month}.md" if part == 1 else f"{month}-{part}.md", month))
        chunks[-1].run_ids.append(run["id"])
        chunks[-1].running |= run["status"] == "running"
    return chunks


def sealed_chunks(runs: list[dict]) -> list[Chunk]:
    """The chunks that belong in the archive: every run older than the RECENT_ENTRIES newest,
    and none still running (a running run's entry changes until it finishes)."""
    if len(runs) <= RECENT_ENTRIES:
        return []
    first_recent = runs[-RECENT_ENTRIES]["id"]
    return [c for c in archive_chunks(runs) if c.run_ids[-1] < first_recent and not c.running]


def _runs(db: Database, ids: list[int]) -> list[dict]:
    return list(db.query(f"SELECT * FROM runs WHERE id IN {id_list(ids)} ORDER BY id", ids))


def live_notes(db: Database, rows: list[dict], run_ids: list[int]) -> dict[int, list[str]]:
    """Run id -> its notes for the cumulative table: --note, then `just note` notes."""
    notes: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        if row["note"]:
            notes[row["run_id"]].append(row["note"])
    for row in db.query(
        f"SELECT run_id, text FROM run_notes WHERE kind = 'note' AND run_id IN {id_list(run_ids)}"
        " ORDER BY id",
        run_ids,
    ):
        notes[row["run_id"]].append(row["text"])
    return notes


def render_archive(db: Database, chunk: Chunk, journal_dir: Path) -> str:
    runs = _runs(db, chunk.run_ids)
    rows = cumulative_rows(db, chunk.run_ids)
    flags = identical_run_flags(db, rows)
    notes = {r["run_id"]: [r["note"]] for r in rows if r["note"]}
    data = EntryData(db, runs, flags, late_notes=False)
    parts = [
        f"# Journal archive: {chunk.name.removesuffix('.md')}",
        "",
        f"Runs {chunk.run_ids[0]} to {chunk.run_ids[-1]} as they were recorded, written once;"
        " notes added later are in ../JOURNAL.md.",
        "",
        "## Cumulative Results",
        "",
        *cumulative_tables(rows, flags, notes, journal_dir, plot=False),
        "## Experiments",
        "",
    ]
    parts += [render_entry(data, run, journal_dir) for run in reversed(runs)]
    return "\n".join(parts).rstrip("\n") + "\n"


def archived_notes(db: Database, archived: dict[int, str]) -> list[str]:
    """Notes added with `just note` to runs whose entries are archived."""
    ids = sorted(archived)
    notes = db.query(
        "SELECT run_notes.run_id, run_notes.kind, run_notes.text, runs.model FROM run_notes "
        f"JOIN runs ON runs.id = run_notes.run_id WHERE run_notes.run_id IN {id_list(ids)} "
        "ORDER BY run_notes.run_id, run_notes.id",
        ids,
    )
    lines = [
        f"- Run {n['run_id']} ({model_name(n['model'])}, [archive/{archived[n['run_id']]}]"
        f"({ARCHIVE_DIR_NAME}/{archived[n['run_id']]})): {n['kind']}: {n['text']}"
        for n in notes
    ]
    return ["## Notes on archived runs", "", *lines, ""] if lines else []


def render_journal(db: Database, journal_dir: Path, rebuild: bool = False) -> str:
    """JOURNAL.md's text; archive files that are due are written on the way (all of them
    again with `rebuild`)."""
    runs = list(db.query("SELECT id, started_at, status FROM runs ORDER BY id"))
    sealed = sealed_chunks(runs)
    archived = {run_id: c.name for c in sealed for run_id in c.run_ids}
    archive_dir = journal_dir / ARCHIVE_DIR_NAME
    for chunk in sealed:
        path = archive_dir / chunk.name
        if rebuild or not path.exists():
            archive_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomically(path, render_archive(db, chunk, journal_dir))
    live = [r["id"] for r in runs if r["id"] not in archived]
    rows = cumulative_rows(db, live)
    flags = identical_run_flags(db, rows)
    recent = _runs(db, live)
    data = EntryData(db, recent, flags)
    parts = [
        "# Training Experiment Journal",
        "",
        "Generated from the ledger by `just journal` after every run: do not edit by hand.",
        'Add goals and notes with `--goal` / `--note`, or later with `just note RUN "text"`.',
        "",
        "## Cumulative Results",
        "",
    ]
    if sealed:
        parts += [
            f"Runs {live[0]} on; older runs, their rows included, are in the archive (below),"
            " and every row is in the ledger's cumulative_results view (`just browse`).",
            "",
        ]
    parts += [
        *cumulative_tables(rows, flags, live_notes(db, rows, live), journal_dir),
        *journal_table(db, live),
        *sweep_sections(db, journal_dir),
        "## Experiments",
        "",
    ]
    parts += [render_entry(data, run, journal_dir) for run in reversed(recent)]
    if sealed:
        parts += ["## Archive", "", "Older entries, by month:", ""]
        parts += [f"- [{c.name}]({ARCHIVE_DIR_NAME}/{c.name})" for c in reversed(sealed)]
        parts.append("")
        parts += archived_notes(db, archived)
    return "\n".join(parts).rstrip("\n") + "\n"


def write_journal(db: Database, out_dir: Path, rebuild: bool = False) -> Path:
    """Regenerate out_dir/JOURNAL.md, and write the archive files that are due (every one
    with `rebuild`); written atomically, so readers never see half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / JOURNAL_NAME
    text = render_journal(db, out_dir, rebuild)
    write_text_atomically(path, text)
    return path
