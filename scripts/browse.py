"""Browse the ledger in Datasette on 127.0.0.1, with metadata.yaml: titles, units, canned
queries and charts (Dashboards menu). Runs may write to the ledger meanwhile. Ctrl-C stops it.

just browse                                  # ./ledger.db (or $LEDGER_DB) on port 8001
just browse port=8002
just browse --ledger experiments/ledger.db
"""

import argparse
import sys
from pathlib import Path

from labbench import PROJECT_ROOT
from labbench.core import cli
from labbench.core.errors import UserError
from labbench.record.ledger import open_ledger_for_reading
from labbench.serving.server import port_is_free

HOST = "127.0.0.1"  # local only: the ledger holds commands, paths and model output
DEFAULT_PORT = 8001  # Datasette's usual port; any free TCP port
DB_NAME = "ledger"  # every ledger file is served under this name, the one metadata.yaml uses
METADATA = PROJECT_ROOT / "metadata.yaml"
# served as /labbench-static/ (metadata.yaml)
STATIC = PROJECT_ROOT / "labbench" / "present" / "datasette"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Browse the ledger in Datasette on 127.0.0.1 until Ctrl-C.",
        epilog="Make-style key=value words work too: port=8002 ledger=PATH.",
    )
    parser.add_argument(
        "--port", type=cli.port_number, default=DEFAULT_PORT, help="port (default: 8001)"
    )
    cli.add_ledger_args(parser)
    return parser


def datasette_app(ledger: Path):
    """A Datasette serving `ledger` as /ledger (whatever the file is called), with our metadata."""
    import yaml
    from datasette.app import Datasette
    from datasette.database import Database

    metadata = yaml.safe_load(METADATA.read_text(encoding="utf-8"))
    # No facet suggestions: each one re-runs a view, seconds per page on a big ledger. The
    # journal's views take ~3 s on 10,000 runs, past Datasette's 1 s query limit: 30 s is
    # enough for a local ledger and still stops a runaway query.
    datasette = Datasette(
        metadata=metadata,
        settings={"suggest_facets": False, "sql_time_limit_ms": 30_000},
        static_mounts=[("labbench-static", str(STATIC))],
    )
    datasette.remove_database("_memory")  # added when no files are given; we add ours by name
    datasette.add_database(Database(datasette, path=str(ledger), is_mutable=True), name=DB_NAME)
    return datasette


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    ledger = cli.existing_ledger_path(args.ledger)
    if not port_is_free(HOST, args.port):
        raise UserError(f"port {args.port} on {HOST} is already in use (pass port=N)")
    # Migrated, so the views exist (a read-only ledger must be up to date); WAL, so runs write
    # meanwhile.
    open_ledger_for_reading(ledger).close()
    # uvicorn shuts down on SIGINT/SIGTERM, then re-raises the signal: end quietly either way.
    try:
        import uvicorn

        app = datasette_app(ledger.resolve()).app()
        print(
            f"browsing {ledger} at http://{HOST}:{args.port}/{DB_NAME} (Ctrl-C stops)", flush=True
        )
        uvicorn.run(app, host=HOST, port=args.port, log_level="warning")
    except KeyboardInterrupt:
        pass
    print("stopped browsing", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run(main)
