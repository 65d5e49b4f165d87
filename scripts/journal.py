"""Regenerate journal/JOURNAL.md from the ledger alone (never edit the journal by hand).

JOURNAL.md holds the cumulative tables and the newest entries; older entries are in
journal/archive/YYYY-MM.md, written once. --rebuild writes every archive file again.

just journal
just journal --ledger experiments/ledger.db
just journal --ledger /read-only/ledger.db --out /tmp/journal
just journal --rebuild
"""

import argparse

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.present import recording
from labbench.present.journal import write_journal


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Regenerate the journal from the ledger.")
    parser.add_argument("--out", help="journal directory (default: journal/ beside the ledger)")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="write the archive files again too (they are otherwise written once)",
    )
    cli.add_ledger_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    with recording.reading_ledger(args.ledger) as ledger:
        out = cli.user_path(args.out) if args.out else ledger.journal_dir
        try:
            path = write_journal(ledger.db, out, rebuild=args.rebuild)
        except OSError as error:
            message = f"cannot write the journal in {out} ({error.strerror}); pass --out DIR"
            raise UserError(message) from None
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
