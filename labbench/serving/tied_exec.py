"""Run a command tied to the process that started it: on Linux the kernel kills it when that
process dies, even by SIGKILL (PR_SET_PDEATHSIG, which survives exec).

    python tied_exec.py PARENT_PID PROGRAM ARG...

Servers are started through this script rather than with a `preexec_fn`: Python code between
fork and exec makes the interpreter run its at-fork hooks in the parent, and a Ctrl-C handled
in one of them (logging's `_releaseLock`) was swallowed and left logging's lock held, so the
server's readiness probe waited on it until the startup timeout. Standard library only: it
runs as a plain script, before anything else is imported.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, program = int(argv[0]), argv[1:]
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the prctl took effect
        sys.exit(1)
    os.execv(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
