"""Regenerate journal/JOURNAL.md from the ledger alone (never edit the journal by hand).

just journal
just journal --ledger experiments/ledger.db
just journal --ledger /read-only/ledger.db --out /tmp/journal
"""

import argparse

from labbench import cli
from labbench.errors import UserError
from labbench.journal import write_journal
from labbench.ledger import journal_dir, open_ledger_for_reading


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Regenerate the journal from the ledger.")
    parser.add_argument("--out", help="journal directory (default: journal/ beside the ledger)")
    cli.add_ledger_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    ledger = cli.existing_ledger_path(args.ledger)
    out = cli.user_path(args.out) if args.out else journal_dir(ledger)
    try:
        path = write_journal(open_ledger_for_reading(ledger), out)
    except OSError as error:
        message = f"cannot write the journal in {out} ({error.strerror}); pass --out DIR"
        raise UserError(message) from None
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
