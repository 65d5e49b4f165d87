"""The ledger a script works in, opened for the length of a run: `recording_ledger` writes the
eval reports and the journal however the run ends, so they always show what the ledger holds;
`reading_ledger` is its read-only counterpart. Writing the journal belongs here, with the
presentation, not with the flag helpers in `labbench.core.cli`.
"""

import sqlite3
import sys
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from labbench.core.cli import existing_ledger_path, ledger_path
from labbench.core.errors import UserError
from labbench.present.journal import write_journal
from labbench.present.report import write_missing_reports
from labbench.record.ledger import (
    adapters_dir,
    journal_dir,
    models_dir,
    open_ledger,
    open_ledger_for_reading,
)


@dataclass
class Ledger:
    """An open ledger and the directories beside it."""

    path: Path
    db: Database

    @property
    def journal_dir(self) -> Path:
        return journal_dir(self.path)

    @property
    def adapters_dir(self) -> Path:
        return adapters_dir(self.path)

    @property
    def models_dir(self) -> Path:
        return models_dir(self.path)


@contextmanager
def recording_ledger(arg: str | None) -> Generator[Ledger, None, None]:
    """Open (creating if needed) the ledger a script records into; however the block ends,
    the eval reports and the journal are written, so they always show what the ledger holds.
    A database error (corruption SQLite finds only when it reads a page) names the ledger."""
    path = ledger_path(arg).resolve()
    ledger = Ledger(path, open_ledger(path))
    corrupt = False
    try:
        yield ledger
    except sqlite3.DatabaseError as error:
        corrupt = True
        raise UserError(f"ledger {path} is corrupt or unwritable ({error})") from None
    except KeyboardInterrupt:
        print(f"interrupted; what was done so far is recorded in {path}", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if not corrupt:
            try:
                write_missing_reports(ledger.db, ledger.journal_dir)
                write_journal(ledger.db, ledger.journal_dir)
            except (OSError, sqlite3.DatabaseError) as error:
                print(f"warning: the journal was not written: {error}", file=sys.stderr)
            except KeyboardInterrupt:
                print(
                    f"interrupted while writing the journal; the runs are recorded in {path}"
                    " (`just journal` writes it again)",
                    file=sys.stderr,
                )
                raise SystemExit(130) from None


@contextmanager
def reading_ledger(arg: str | None) -> Generator[Ledger, None, None]:
    """An existing ledger for a script that only reads it (read-only ledgers work too)."""
    path = existing_ledger_path(arg).resolve()
    ledger = Ledger(path, open_ledger_for_reading(path))
    try:
        yield ledger
    except sqlite3.DatabaseError as error:
        raise UserError(f"ledger {path} is corrupt ({error})") from None
    finally:
        ledger.db.close()
