"""Add a note (or a goal) to a run after the fact; it is stored in the ledger.

just note 7 "the val loss spike at 150 is the lr warm-up ending"
just note 7 --goal "does rank 16 beat rank 8?"
"""

import argparse

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.present import recording
from labbench.record.ledger import now


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Add a note or a goal to a recorded run.")
    parser.add_argument("run", type=int, help="run id (runs.id)")
    parser.add_argument("text", help="the note")
    parser.add_argument("--goal", action="store_true", help="record the text as the run's goal")
    cli.add_ledger_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    cli.existing_ledger_path(args.ledger)
    if not args.text.strip():
        raise UserError("the note is empty")
    with recording.recording_ledger(args.ledger) as ledger:
        if not ledger.db.table("runs").count_where("id = ?", [args.run]):
            raise UserError(f"no run {args.run} in {ledger.path}")
        kind = "goal" if args.goal else "note"
        ledger.db.table("run_notes").insert(
            {"run_id": args.run, "created_at": now(), "kind": kind, "text": args.text.strip()}
        )
    print(f"added a {kind} to run {args.run}")
    return 0


if __name__ == "__main__":
    cli.run(main)
