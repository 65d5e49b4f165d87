"""How problems reach users: one exception type shown as one line, and exits said in words."""

import signal

# What the signals a crashed process most often dies of mean, for people who don't know them.
SIGNAL_MEANINGS = {
    "SIGILL": "illegal instruction",
    "SIGSEGV": "segmentation fault",
    "SIGKILL": "killed",
    "SIGABRT": "aborted",
    "SIGTERM": "terminated",
    "SIGBUS": "bus error",
}


class UserError(Exception):
    """A problem the user can fix; shown as one line, never a traceback."""


def describe_exit(returncode: int) -> str:
    """A subprocess returncode in words: 'exited with code 2', 'killed by SIGILL (illegal
    instruction)' (Python reports death by signal N as -N)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"killed by signal {-returncode}"
    meaning = SIGNAL_MEANINGS.get(name)
    return f"killed by {name} ({meaning})" if meaning else f"killed by {name}"
