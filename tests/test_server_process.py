"""How a server process is created: nothing of ours runs between fork and exec, and the
server still dies with the process that started it."""

import subprocess
import sys
import time

import pytest
from helpers import pid_alive

# A Ctrl-C handled in the first Python code the parent runs after forking a server. The hook
# is a C call registered before logging is imported, so it runs just before logging's own
# after-fork hook, which is where the signal is then handled: exactly what a Ctrl-C during the
# fork does. The script then reports whether another thread can still take logging's lock,
# and waits to be killed.
CTRL_C_DURING_FORK = """
import ctypes, functools, os, signal, sys, threading, time
kill = functools.partial(ctypes.CDLL(None).kill, os.getpid(), signal.SIGINT)
os.register_at_fork(after_in_parent=kill)
from labbench.serving.server import start_server
try:
    server = start_server(sys.argv[1], startup_timeout=60)
    print("ready", server.pid, flush=True)
except BaseException as error:
    print(type(error).__name__, error, flush=True)
import logging
taker = threading.Thread(target=logging.getLogger, args=("probe",), daemon=True)
taker.start()
taker.join(10)
print("logging lock held" if taker.is_alive() else "logging lock free", flush=True)
time.sleep(600)
"""


@pytest.mark.slow("a tiny-model mlx_lm server, Ctrl-C while it forks")
@pytest.mark.timeout(240)
def test_a_ctrl_c_while_the_server_is_forked_leaves_logging_usable(tiny_model):
    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_DURING_FORK, str(tiny_model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        started = process.stdout.readline().split()
        lock = process.stdout.readline().strip()
        # Before the fix the hook ran (a preexec_fn makes Python run the at-fork hooks), the
        # Ctrl-C was swallowed in logging's _releaseLock, and the readiness probe waited on
        # the lock it left held: "ServerStartError ... not ready after 60 s".
        assert started[0] == "ready", started
        assert lock == "logging lock free"
        server_pid = int(started[1])
        assert pid_alive(server_pid)
        process.kill()  # SIGKILL: no Python cleanup runs; the kernel stops the server
        deadline = time.monotonic() + 30
        while pid_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(server_pid)
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=30)
    assert "Exception ignored" not in stderr, stderr
