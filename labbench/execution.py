"""Scoring code by running it: the model's code is extracted from its answer and run with the
prompt's tests in a separate, contained process (labbench/sandbox_runner.py is the child side).

    result = run_tests(extract_code(answer, "add"), "assert add(2, 2) == 4")
    result.verdict, result.detail   # ("failed", "assert add(2, 2) == 4")

What the containment does and does not protect against is in the README ("Running model code").
"""

import contextlib
import functools
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from labbench.errors import describe_exit

VERDICTS = ("passed", "failed", "error", "timed out", "no code found")
OUTPUT_CHARS = 2000  # captured output kept, truncated
RUNNER = Path(__file__).with_name("sandbox_runner.py")
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


# ---------------------------------------------------------------------------------------------
# Extraction

_THINK_CLOSED = re.compile(r"<think>.*?</think>", re.DOTALL)
# An opening fence: ``` or ~~~ (three or more) and an optional info string such as "python".
_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\n`]*)$")
_PYTHON_INFO = {"", "python", "py", "python3", "py3", "ipython", "pycon", "sage"}
# A line where bare code plausibly starts.
_CODE_START = re.compile(r"^(?:async\s+def|def|class|import|from\s+\S+\s+import)\b|^@\w")


def extract_code(response: str | None, entry_point: str | None = None) -> str | None:
    """The model's code: from fenced blocks (```python, ```py, ``` or ~~~), else bare code.

    Thinking (<think>...</think>, or everything before a lone </think>) is ignored. A final fence
    left open by max_tokens runs to the end of the text. Among Python blocks (python, py or no
    language), the last one that defines the entry point (def/class NAME or NAME = ...) wins, on
    its own (an import in another block is not added); without one, every Python block that
    compiles is joined in order (so a helper in one block and the function in the next both
    count, and prose or output in an unlabelled block is dropped).
    Without fences, bare code is the longest run that compiles from the first line that starts
    like code (def, class, import, from, a decorator). None when there is no code.
    """
    text = _without_thinking(response or "")
    blocks = _fenced_blocks(text)
    if blocks is None:
        return _bare_code(text)
    python = [code for info, code in blocks if info in _PYTHON_INFO and code.strip()]
    if not python:
        return None
    if entry_point:
        defining = [code for code in python if _defines(code, entry_point)]
        if defining:
            return defining[-1]
    compiling = [code for code in python if _compiles(code)]
    return "\n\n".join(compiling) if compiling else python[-1]


def _without_thinking(text: str) -> str:
    text = _THINK_CLOSED.sub("", text.replace("\r\n", "\n"))
    if "</think>" in text:  # the template opened the thinking, the answer follows its close
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:  # cut off while thinking
        text = text.split("<think>", 1)[0]
    return text


def _fenced_blocks(text: str) -> list[tuple[str, str]] | None:
    """(language, dedented code) for each fenced block; None when the text has no fence."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening.group(1)
        info = opening.group(2).strip().split(" ")[0].lower()
        body, i = [], i + 1
        while i < len(lines) and not _closes(lines[i], fence):
            if lines[i].rstrip().endswith(fence):  # "    return x```": closed on the code's line
                body.append(lines[i].rstrip()[: -len(fence)])
                break
            body.append(lines[i])
            i += 1
        i += 1
        blocks.append((info, textwrap.dedent("\n".join(body)).strip("\n") + "\n"))
    return blocks or None


def _closes(line: str, fence: str) -> bool:
    mark = line.strip()
    return len(mark) >= len(fence) and mark == fence[0] * len(mark)


def _defines(code: str, name: str) -> bool:
    escaped = re.escape(name)
    pattern = rf"^\s*(?:(?:async\s+)?def|class)\s+{escaped}\b|^\s*{escaped}\s*(?::[^=\n]*)?="
    return re.search(pattern, code, re.MULTILINE) is not None


def _compiles(code: str) -> bool:
    try:
        compile(code, "<answer>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def _bare_code(text: str) -> str | None:
    lines = text.strip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    for end in range(len(lines), start, -1):
        if end < len(lines) and lines[end][:1] in (" ", "\t"):
            continue  # cutting inside an indented block never helps
        candidate = "\n".join(lines[start:end]).strip("\n") + "\n"
        if _compiles(candidate):
            return candidate
    return None


# ---------------------------------------------------------------------------------------------
# Running


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
    work = Path(tempfile.mkdtemp(prefix="labbench-exec-"))
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
            timed_out = not _wait(process, start + timeout_s)
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
                + ["namespaces" if namespaces else "plain", str(go_read)],
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


def _make_cgroups(name: str) -> dict[str, Path]:
    """As root with cgroup v1 (as here and in CI): a pids and a memory cgroup for this run, so
    the limits hold for the run as a whole (64 processes of 1 GiB each could take 64 GiB), and
    the process limit is not shared, as RLIMIT_NPROC is, with every other sandbox run as nobody.
    cgroup v2 is not handled yet."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return {}
    try:
        memberships = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    made = {}
    for _, controllers, path in (
        line.split(":", 2) for line in memberships if line.count(":") >= 2
    ):
        for controller, (filename, value) in CGROUP_LIMITS.items():
            if controller not in controllers.split(","):
                continue
            directory = Path(f"/sys/fs/cgroup/{controller}{path.rstrip('/')}") / name
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
