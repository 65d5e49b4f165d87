"""What every script shares: make-style `key=value` words, paths as the user typed them, where
the ledger is, and one way to end (`UserError` -> one line and exit 1, Ctrl-C or SIGTERM ->
exit 130). A script is `main(argv=None)` run through `run(main)`; the ledger it records into is
opened by `labbench.present.recording`.
"""

import argparse
import os
import re
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.core.paths import INVOCATION_DIR_ENV, user_path

LEDGER_ENV = "LEDGER_DB"  # where the ledger lives when --ledger is not given
DEFAULT_LEDGER = "ledger.db"

_KEY_VALUE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.*)$", re.DOTALL)


def run(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's `main` and exit with its code: a UserError is one line and exit 1,
    Ctrl-C or SIGTERM exit 130, both without a traceback."""
    raise_keyboard_interrupt_on_sigterm()
    try:
        code = main()
    except UserError as error:
        code = fail(str(error))
    except sqlite3.DatabaseError as error:
        code = fail(f"the ledger could not be read or written: {error}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)


def fail(message: str, code: int = 1) -> NoReturn:
    # One line, whatever the message quotes (SQLite's integrity report spans several).
    line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"error: {line}", file=sys.stderr)
    sys.exit(code)


def raise_keyboard_interrupt_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C, so `finally` blocks stop servers and finalise runs."""

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def expand_key_values(argv: list[str], options: set[str]) -> list[str]:
    """Turn make-style `model=x` into `--model x` when `--model` is one of `options`
    (`served_model=` -> `--served-model`); any other word, `lr=3e-4 was high` included, stays."""
    out: list[str] = []
    for word in argv:
        match = _KEY_VALUE.match(word)
        flag = "--" + match.group(1).replace("_", "-") if match else ""
        if match and flag in options:
            out += [flag, match.group(2)]
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
    for action in parser._actions:  # argparse shows no line at all for a flag without help
        if action.help is None and action.default not in (None, False, argparse.SUPPRESS):
            action.help = "default: %(default)s"
    if os.environ.get(INVOCATION_DIR_ENV):  # run by the justfile: the recipe is the script's name
        parser.prog = "just " + Path(sys.argv[0]).stem.replace("_", "-")
    words = expand_key_values(
        sys.argv[1:] if argv is None else argv, set(parser._option_string_actions)
    )
    args, extra = parser.parse_known_args(words)
    for word in extra:
        match = _KEY_VALUE.match(word)
        if match:
            one_line_error(f"unknown option {match.group(1)!r} in {word!r}")
    if extra:
        one_line_error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def given_flags(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> set[str]:
    """The long options typed on the command line (make-style words too): {"--model", ...}."""
    words = expand_key_values(
        sys.argv[1:] if argv is None else argv, set(parser._option_string_actions)
    )
    return {word.split("=", 1)[0] for word in words if word.startswith("--")}


def boolean(word: str) -> bool:
    """An argparse type for make-style switches: `exec=false`, `exec=true` (also yes/no, 1/0)."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
        word.strip().lower()
    )
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {word!r}")
    return value


def port_number(word: str) -> int:
    """An argparse type for a TCP port we bind or connect to (0, "any free port", is not one:
    we must know the port to talk to the server there)."""
    try:
        port = int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {word!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {port}")
    return port


def add_old_spelling(
    parser: argparse.ArgumentParser, old: str, new: str, value: object = None
) -> None:
    """Accept `old`, the flag renamed `new`, for one more release with a one-line note; --help
    shows only `new`. `value`: what a bare old switch (e.g. --no-mask-prompt) sets."""
    target = parser._option_string_actions[new]
    old_word, new_word = old.removeprefix("--").replace("-", "_"), new.removeprefix("--")
    new_word = new_word.replace("-", "_")

    class OldSpelling(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            shown = f"{old_word}=" if value is None else old
            said = f"{new_word}=" if value is None else f"{new_word}={str(value).lower()}"
            print(
                f"note: {shown} is now {said} (the old name is accepted until the next release)",
                file=sys.stderr,
            )
            setattr(namespace, target.dest, values if value is None else value)

    takes: dict[str, Any] = {"nargs": 0} if value is not None else {"type": target.type}
    parser.add_argument(
        old,
        dest=target.dest,
        action=OldSpelling,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
        **takes,
    )


def add_allow_other_base(parser: argparse.ArgumentParser) -> None:
    """The override of "an adapter runs on its base model" (labbench.eval.adapterbase)."""
    parser.add_argument(
        "--allow-other-base",
        type=boolean,
        nargs="?",
        const=True,
        default=False,
        metavar="true|false",
        help="run the adapter on --model although it was trained on another model (e.g. a"
        " 4-bit adapter on the 8-bit model of the same weights); the run records both",
    )


def add_ledger_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger",
        help=f"ledger database (default: ${LEDGER_ENV}, else {DEFAULT_LEDGER} in the project)",
    )


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Flags every script that records a run shares."""
    add_ledger_args(parser)
    parser.add_argument("--goal", help="why this run is made (shown in the journal)")
    parser.add_argument("--note", help="a note on this run (shown in the journal)")


def ledger_path(arg: str | None) -> Path:
    """--ledger, else $LEDGER_DB (both from the user's directory), else the project's ledger."""
    given = arg or os.environ.get(LEDGER_ENV)
    return user_path(given) if given else PROJECT_ROOT / DEFAULT_LEDGER


def existing_ledger_path(arg: str | None) -> Path:
    """The ledger a read-only script works on; it must exist (never create an empty one)."""
    ledger = ledger_path(arg)
    if not ledger.exists():
        fail(f"no ledger at {ledger} (run an eval first, or pass --ledger PATH)")
    return ledger
