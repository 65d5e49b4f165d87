"""Regenerate journal/JOURNAL.md from the ledger alone (never edit the journal by hand).

just journal
just journal --ledger experiments/ledger.db
"""

import argparse
import sys

from labbench import cli
from labbench.journal import write_journal
from labbench.ledger import journal_dir, open_ledger


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Regenerate the journal from the ledger.")
    cli.add_ledger_args(parser)
    return parser


def main() -> int:
    args = cli.parse_args(build_parser())
    ledger = cli.existing_ledger_path(args.ledger)
    path = write_journal(open_ledger(ledger), journal_dir(ledger))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
