"""Scoring code by running it: the model's code (labbench/sandbox/codeextract.py finds it in the
answer) runs with the prompt's tests in a separate, contained process
(labbench/sandbox/sandbox_runner.py is the child side).

    result = run_tests(extract_code(answer, "add"), "assert add(2, 2) == 4")
    result.verdict, result.detail   # ("failed", "assert add(2, 2) == 4")

What the containment does and does not protect against is in the README ("Running model code").
"""

import atexit
import contextlib
import functools
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from labbench.core.errors import describe_exit

VERDICTS = ("passed", "failed", "error", "timed out", "no code found")
OUTPUT_CHARS = 2000  # captured output kept, truncated
RUNNER = Path(__file__).with_name("sandbox_runner.py")
# Runs in progress (runner process -> its work directory), so an evaluator that exits early
# (Ctrl-C, SIGTERM, an exception) takes them with it: see _stop_running_at_exit.
_running: dict[subprocess.Popen, tuple[Path, dict[str, Path]]] = {}
WORK_PREFIX = "labbench-exec-"  # of the temporary directories and cgroups
STALE_S = 3600  # leftovers of an evaluator that was SIGKILLed are removed after this
_running_lock = threading.Lock()
NOBODY = 65534  # the runner drops root to this uid and gid
RUN_PROCESSES, RUN_MEMORY_BYTES = 64, 2 << 30  # cgroup limits for a whole run, where there is one
CGROUP_LIMITS = {  # cgroup v1 controller -> (file, value)
    "pids": ("pids.max", str(RUN_PROCESSES)),
    "memory": ("memory.limit_in_bytes", str(RUN_MEMORY_BYTES)),
}
CGROUP_DESCRIPTIONS = {
    "pids": f"{RUN_PROCESSES} processes",
    "memory": f"{RUN_MEMORY_BYTES >> 30} GiB",
}


@dataclass(frozen=True)
class ExecutionResult:
    verdict: str  # one of VERDICTS
    detail: str  # one line: the failing assert, the exception, the timeout, why no code
    output: str  # the child's stdout and stderr, at most OUTPUT_CHARS
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


def run_tests(code: str | None, tests: str, *, timeout_s: float = 10.0) -> ExecutionResult:
    """Run `code`, then `tests` in the same namespace, in a separate contained process.

    Passed means both ran to the end without an exception. Code that is None or blank (what
    extract_code found) is "no code found", without starting anything. Blocking and thread-safe.
    """
    if code is None or not code.strip():
        return ExecutionResult("no code found", "the answer has no Python code", "", 0.0)
    return _execute(code, tests, timeout_s)[0]


def _execute(
    code: str, tests: str, timeout_s: float, namespaces: bool = True
) -> tuple[ExecutionResult, str]:
    """The result, and the protections the runner reported active. namespaces=False tests the
    fallback that machines without Linux namespaces (macOS) get."""
    start = time.monotonic()
    _remove_stale_leftovers()
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    cgroups = _make_cgroups(work.name) if namespaces else {}
    try:
        box = work / "box"
        box.mkdir()
        if os.geteuid() == 0:  # the worker runs as nobody: let it into its box, and no further
            os.chown(box, NOBODY, NOBODY)
            work.chmod(0o711)
        (work / "solution.py").write_text(code, encoding="utf-8")
        (work / "tests.py").write_text(tests, encoding="utf-8")
        cpu_seconds = math.ceil(timeout_s) + 1
        with open(work / "output", "wb+") as output:
            process, joined = _start(work, cpu_seconds, namespaces, output, cgroups)
            with _running_lock:
                _running[process] = (work, cgroups)
            try:
                timed_out = not _wait(process, start + timeout_s)
            finally:
                with _running_lock:
                    _running.pop(process, None)
            captured = _captured(output)
        verdict, detail, protections = _verdict(work, timed_out, timeout_s, cpu_seconds)
        if joined:
            limits = ", ".join(CGROUP_DESCRIPTIONS[controller] for controller in joined)
            protections = f"cgroup ({limits}), {protections}"
        return ExecutionResult(verdict, detail, captured, time.monotonic() - start), protections
    finally:
        _remove_cgroups(cgroups)
        shutil.rmtree(work, ignore_errors=True)


def _start(
    work: Path, cpu_seconds: int, namespaces: bool, output, cgroups: dict[str, Path]
) -> tuple[subprocess.Popen, list[str]]:
    """The runner, and the cgroups it joined. It is moved into them while its Python starts
    (each move waits for an RCU grace period, 10-25 ms on a busy machine); it waits for a byte
    saying we are done ("p": with a pids cgroup) before it forks anything."""
    box = work / "box"
    go_read, go_write = os.pipe()
    try:
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", str(RUNNER), str(work), str(cpu_seconds)]
                + ["namespaces" if namespaces else "plain", str(go_read), str(os.getpid())],
                cwd=box,
                env=_minimal_env(box),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(go_read,),
            )
        finally:
            os.close(go_read)
        joined = _join_cgroups(cgroups, process.pid)
        with contextlib.suppress(BrokenPipeError):  # a runner that died at its start
            os.write(go_write, b"p" if "pids" in joined else b"g")
    finally:
        os.close(go_write)
    return process, joined


@atexit.register
def _stop_running_at_exit() -> None:
    """Kill the process group of every run still going and remove its files. The threads that
    started them are daemons, frozen at exit, so their own cleanup never runs. (A SIGKILLed
    evaluator runs no Python at all: on Linux the runner dies with it, by PR_SET_PDEATHSIG.)"""
    with _running_lock:
        running = list(_running.items())
        _running.clear()
    for process, (work, cgroups) in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=2)
        _remove_cgroups(cgroups)
        shutil.rmtree(work, ignore_errors=True)


@functools.cache
def _remove_stale_leftovers() -> None:
    """Once per process: the work directories and (empty) cgroups that an evaluator killed by
    SIGKILL left behind, when they are over an hour old; a run in progress is never that old."""
    now = time.time()
    cgroups = list(_cgroup_parents().values())
    for parent in [Path(tempfile.gettempdir()), *cgroups]:
        for path in parent.glob(f"{WORK_PREFIX}*") if parent.is_dir() else []:
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime < STALE_S:
                    continue
                if parent in cgroups:
                    path.rmdir()  # refused while a process is in it
                else:
                    shutil.rmtree(path)


def _make_cgroups(name: str) -> dict[str, Path]:
    """As root with cgroup v1 (as here and in CI): a pids and a memory cgroup for this run, so
    the limits hold for the run as a whole (64 processes of 1 GiB each could take 64 GiB), and
    the process limit is not shared, as RLIMIT_NPROC is, with every other sandbox run as nobody.
    cgroup v2 is not handled yet."""
    made = {}
    for controller, parent in _cgroup_parents().items():
        filename, value = CGROUP_LIMITS[controller]
        directory = parent / name
        try:
            directory.mkdir()
        except OSError:
            continue
        try:
            (directory / filename).write_text(value)
        except OSError:
            _remove_cgroups({controller: directory})
            continue
        made[controller] = directory
    return made


def _cgroup_parents() -> dict[str, Path]:
    """Controller -> our own cgroup v1 directory, where the runs' cgroups go (as root on Linux)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return {}
    try:
        memberships = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    parents = {}
    for _, controllers, path in (
        line.split(":", 2) for line in memberships if line.count(":") >= 2
    ):
        for controller in CGROUP_LIMITS:
            if controller in controllers.split(","):
                parents[controller] = Path(f"/sys/fs/cgroup/{controller}{path.rstrip('/')}")
    return parents


def _join_cgroups(cgroups: dict[str, Path], pid: int) -> list[str]:
    joined = []
    for controller, directory in cgroups.items():
        try:
            (directory / "cgroup.procs").write_text(str(pid))
        except OSError:
            continue
        joined.append(controller)
    return joined


def _remove_cgroups(cgroups: dict[str, Path]) -> None:
    """Once the processes in them are gone: SIGKILLed ones take a moment to leave."""
    deadline = time.monotonic() + 2.0
    for directory in cgroups.values():
        while True:
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)


def _minimal_env(box: Path) -> dict[str, str]:
    """Built from scratch, so no token or key of ours reaches the code."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(box),
        "TMPDIR": str(box),
    }


def _wait(process: subprocess.Popen, deadline: float) -> bool:
    """Wait for the runner until the deadline; then kill its whole process group. True when
    it finished in time. The group is killed while the runner is still unreaped, so its id
    cannot have been reused by someone else's process."""
    finished = _exits_by(process, deadline)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # stragglers left behind, or all of it on timeout
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    return finished


def _exits_by(process: subprocess.Popen, deadline: float) -> bool:
    """Whether the process exits before the deadline, leaving it unreaped: on Linux a pidfd
    turns readable when it exits; elsewhere, polling."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux 5.3+ (or a seccomp filter refuses it)
        pidfd = None
    if pidfd is not None:
        try:
            poller = select.poll()  # not select.select: it fails on descriptors above 1023
            poller.register(pidfd, select.POLLIN)
            return bool(poller.poll(max(0.0, deadline - time.monotonic()) * 1000))
        finally:
            os.close(pidfd)
    delay = 0.0005
    while not _exited_unreaped(process):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.005)
    return True


def _exited_unreaped(process: subprocess.Popen) -> bool:
    if hasattr(os, "waitid"):
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, process.pid, flags) is not None
    return process.poll() is not None  # macOS before Python 3.13: no waitid, so this reaps


def _verdict(work: Path, timed_out: bool, timeout_s: float, cpu: int) -> tuple[str, str, str]:
    """(verdict, detail, protections reported) from the runner's result file."""
    if timed_out:
        return "timed out", f"no result within {timeout_s:g} s", ""
    try:
        report = (work / "result").read_text(encoding="utf-8") + "\n\n\n"
        exit_text, verdict, detail, protections = report.split("\n")[:4]
        exit_code = int(exit_text)
    except (OSError, ValueError):
        return "error", "the sandbox runner did not report", ""
    if exit_code == -signal.SIGXCPU:
        return "timed out", f"used more than {cpu} s of CPU time", protections
    if verdict in VERDICTS and exit_code == 0:
        return verdict, detail, protections
    how = describe_exit(exit_code) if exit_code >= 0 else "was " + describe_exit(exit_code)
    died = f"the code under test {how} before the tests finished"
    return "error", died, protections


def _captured(output) -> str:
    """Head and tail of the output (a traceback is at the end), at most OUTPUT_CHARS in all."""
    marker = "\n[... output cut ...]\n"
    keep = (OUTPUT_CHARS - len(marker)) // 2
    size = output.seek(0, os.SEEK_END)
    output.seek(0)
    if size <= OUTPUT_CHARS * 4:  # UTF-8 takes at most 4 bytes a character
        text = output.read().decode("utf-8", "replace")
        if len(text) <= OUTPUT_CHARS:
            return text
        return text[:keep] + marker + text[-keep:]
    head = output.read(keep * 4).decode("utf-8", "replace")[:keep]
    output.seek(size - keep * 4)
    tail = output.read().decode("utf-8", "replace")[-keep:]
    return head + marker + tail


@functools.cache
def containment_summary() -> str:
    """Which protections are active on this machine, in one line: what the runner reported
    for a trial run (the first call costs one run), after what every run has."""
    parts = ["separate process", "temp dir", "minimal env", "stdin closed", "wall-clock timeout"]
    result, protections = _execute("pass", "", 10.0)
    if not result.passed:
        return ", ".join(parts) + f"; the trial run failed: {result.detail}"
    return ", ".join(parts + [protections]) if protections else ", ".join(parts)
