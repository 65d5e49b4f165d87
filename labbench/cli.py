"""Small helpers every script uses: make-style `key=value` words, the ledger path, errors."""

import argparse
import os
import re
import signal
import sys
from pathlib import Path
from typing import NoReturn

LEDGER_ENV = "LEDGER_DB"  # where the ledger lives when --ledger is not given
DEFAULT_LEDGER = "ledger.db"

_KEY_VALUE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.*)$", re.DOTALL)


def expand_key_values(argv: list[str]) -> list[str]:
    """Turn make-style `model=x` words into `--model x` (`served_model=` -> `--served-model`)."""
    out: list[str] = []
    for word in argv:
        match = _KEY_VALUE.match(word)
        if match and not word.startswith("-"):
            out += ["--" + match.group(1).replace("_", "-"), match.group(2)]
        else:
            out.append(word)
    return out


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default, unless it has none or already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def parse_args(
    parser: argparse.ArgumentParser, argv: list[str] | None = None
) -> argparse.Namespace:
    """Parse make-style words and flags; a bad one is a one-line error, not a usage block."""

    def one_line_error(message: str) -> NoReturn:
        fail(f"{message} (see --help)", code=2)

    parser.error = one_line_error
    parser.formatter_class = _ShowDefaults
    return parser.parse_args(expand_key_values(sys.argv[1:] if argv is None else argv))


def add_ledger_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger",
        help=f"ledger database (default: ${LEDGER_ENV}, else ./{DEFAULT_LEDGER})",
    )


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Flags every script that records a run shares."""
    add_ledger_args(parser)
    parser.add_argument("--goal", help="why this run is made (shown in the journal)")
    parser.add_argument("--note", help="a note on this run (shown in the journal)")


def ledger_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get(LEDGER_ENV) or DEFAULT_LEDGER)


def existing_ledger_path(arg: str | None) -> Path:
    """The ledger a read-only script works on; it must exist (never create an empty one)."""
    ledger = ledger_path(arg)
    if not ledger.exists():
        fail(f"no ledger at {ledger} (run an eval first, or pass --ledger PATH)")
    return ledger


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def raise_keyboard_interrupt_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C, so `finally` blocks stop servers and finalise runs."""

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
