"""The executor: extracting code from answers, running it with tests, and its containment."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import HANG_S

from labbench.sandbox.codeextract import extract_code
from labbench.sandbox.execution import (
    OUTPUT_CHARS,
    ExecutionResult,
    _execute,
    containment_summary,
    run_tests,
)

# ---------------------------------------------------------------------------------------------
# Extraction (pure functions)


def test_a_python_fence():
    answer = "Here you go:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nEnjoy."
    assert extract_code(answer, "add") == "def add(a, b):\n    return a + b\n"


@pytest.mark.parametrize("info", ["py", "Python", "python3", "", "python title=add.py"])
def test_fence_languages_taken_as_python(info):
    assert extract_code(f"```{info}\nx = 1\n```") == "x = 1\n"


def test_tilde_fence_and_indented_fence():
    assert extract_code("~~~python\nx = 1\n~~~") == "x = 1\n"
    assert extract_code("1. Write:\n   ```python\n   def f():\n       return 1\n   ```") == (
        "def f():\n    return 1\n"
    )


def test_other_languages_are_not_code():
    assert extract_code("Install it:\n```bash\npip install numpy\n```") is None


def test_the_block_defining_the_entry_point_wins():
    answer = (
        "A helper first:\n```python\ndef helper():\n    return 1\n```\n"
        "The function:\n```python\ndef solve(x):\n    return x * 2\n```\n"
        "Usage:\n```python\nprint(solve(3))\n```"
    )
    assert extract_code(answer, "solve") == "def solve(x):\n    return x * 2\n"


def test_the_last_block_defining_the_entry_point_wins():
    answer = (
        "```python\ndef solve(x):\n    return x\n```\nOops, fixed:\n"
        "```python\ndef solve(x):\n    return x * 2\n```"
    )
    assert extract_code(answer, "solve") == "def solve(x):\n    return x * 2\n"


def test_entry_point_as_assignment_or_class():
    answer = "```python\nimport math\n```\n```python\nsolve = lambda x: x\n```"
    assert extract_code(answer, "solve") == "solve = lambda x: x\n"
    answer = "```python\nx = 1\n```\n```python\nclass Solve:\n    pass\n```"
    assert extract_code(answer, "Solve") == "class Solve:\n    pass\n"


def test_without_an_entry_point_compiling_blocks_are_joined_in_order():
    answer = (
        "```python\ndef helper():\n    return 1\n```\nIt prints:\n```\n>>> solve()\n1\n```\n"
        "```python\ndef solve():\n    return helper()\n```"
    )
    joined = "def helper():\n    return 1\n\n\ndef solve():\n    return helper()\n"
    assert extract_code(answer) == joined
    # The entry point is named but no block defines it: the same rule.
    assert extract_code(answer, "missing") == joined


def test_a_fence_closed_at_the_end_of_a_code_line():
    answer = "```python\ndef f():\n    return 1```\nThat is all."
    assert extract_code(answer, "f") == "def f():\n    return 1\n"


def test_unclosed_final_fence_runs_to_the_end():
    answer = "```python\ndef f():\n    return 1\n```\nBetter:\n```python\ndef g():\n    return"
    assert extract_code(answer, "g") == "def g():\n    return\n"


def test_bare_code_with_prose_around_it():
    answer = "Sure! Here it is.\n\ndef f(x):\n    return x + 1\n\n\nThis adds one to x."
    assert extract_code(answer, "f") == "def f(x):\n    return x + 1\n"
    assert extract_code("import math\n\nx = math.pi\n") == "import math\n\nx = math.pi\n"


@pytest.mark.parametrize(
    "answer",
    [None, "", "   ", "I cannot help with that.", "The answer is 42.", "```python\n\n```"],
)
def test_no_code(answer):
    assert extract_code(answer, "f") is None


def test_thinking_is_ignored():
    answer = (
        "<think>Maybe\n```python\ndef f():\n    return 0\n```\n</think>\n"
        "```python\ndef f():\n    return 1\n```"
    )
    assert extract_code(answer, "f") == "def f():\n    return 1\n"
    # The template opened the thinking: only its close is in the answer.
    assert extract_code("def f(): pass\n</think>\nNo code after all.") is None
    # Cut off while thinking.
    assert extract_code("<think>\ndef f():\n    return 0\n") is None


# ---------------------------------------------------------------------------------------------
# Verdicts (each starts a process)

ADD = "def add(a, b):\n    return a + b\n"


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_passed():
    result = run_tests(ADD, "assert add(2, 2) == 4\nprint('checked')")
    assert (result.verdict, result.detail, result.passed) == ("passed", "", True)
    assert result.output == "checked\n"
    assert 0 < result.duration_s < 10


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_failed_shows_the_assert_line():
    result = run_tests(ADD, "assert add(1, 1) == 2\nassert add(2, 2) == 5, 'bad sum'\n")
    assert (result.verdict, result.detail) == ("failed", "assert add(2, 2) == 5, 'bad sum'")
    assert "AssertionError: bad sum" in result.output
    assert not result.passed


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_failed_inside_humaneval_check():
    tests = (
        "def check(candidate):\n    assert candidate(1, 2) == 3\n"
        "    assert candidate(2, 2) == 5\n\ncheck(add)\n"
    )
    result = run_tests(ADD, tests)
    assert (result.verdict, result.detail) == ("failed", "assert candidate(2, 2) == 5")


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "code, detail",
    [
        ("def add(a, b):\n    return a + c\n", "NameError: name 'c' is not defined"),
        ("def add(a, b)\n    return a + b\n", "SyntaxError: expected ':' (solution.py, line 1)"),
        ("import sys\nsys.exit(0)\n", "SystemExit: 0"),
        ("add = input()\n", "EOFError: EOF when reading a line"),
    ],
)
def test_error_shows_the_exception_type(code, detail):
    result = run_tests(code, "assert add(2, 2) == 4")
    assert (result.verdict, result.detail) == ("error", detail)
    assert detail.split(":")[0] in result.output


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_a_process_that_dies_is_an_error():
    result = run_tests("import os\nos._exit(3)\n", "")
    assert result.verdict == "error"
    assert result.detail == "the code under test exited with code 3 before the tests finished"
    result = run_tests("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "")
    assert result.verdict == "error"
    assert result.detail == (
        "the code under test was killed by SIGSEGV (segmentation fault) before the tests finished"
    )


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_output_is_truncated_keeping_head_and_tail():
    result = run_tests("print('x' * 100_000)\nraise ValueError('at the end')\n", "")
    assert result.verdict == "error"
    assert len(result.output) <= OUTPUT_CHARS
    assert result.output.startswith("xxx")
    assert result.output.endswith("ValueError: at the end\n")


def test_no_code_found_starts_nothing():
    result = run_tests(extract_code("I would rather not.", "add"), "assert add(2, 2) == 4")
    assert result == ExecutionResult("no code found", "the answer has no Python code", "", 0.0)
    assert not result.passed


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_runs_in_parallel_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    cases = [(f"assert add({n}, 1) == {n + 1 + n % 2}", n % 2 == 0) for n in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: run_tests(ADD, case[0]), cases))
    assert [result.passed for result in results] == [passed for _, passed in cases]


# ---------------------------------------------------------------------------------------------
# Containment: each case finishes, is not passed, says why, and touches nothing else.
# namespaces=False runs the fallback a machine without Linux namespaces (macOS) gets.

SECRET = "s3cret-token-7f1d"
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds leftovers in /proc")


def _require(protection: str) -> None:
    """Skip where this machine lacks the protection (macOS, Linux without namespaces); the
    summary test fails instead where it must be on (Linux as root, as in CI)."""
    if protection not in containment_summary():
        pytest.skip(f"no {protection} here: {containment_summary()}")


def _leftovers(result, grace_s: float = 2.0) -> list[str]:
    """Processes still running from the run whose box the code printed on its first line, after
    a grace period for the SIGKILLs sent to reach them all (zombies have an empty cmdline)."""
    work = os.path.dirname(result.output.splitlines()[0])
    assert work.startswith(tempfile.gettempdir())
    deadline = time.monotonic() + grace_s
    while True:
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if work.encode() in f.read():
                        left.append(pid)
            except OSError:
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("namespaces", [True, False])
@needs_proc
def test_an_endless_loop_times_out(namespaces):
    code = "import os\nprint(os.getcwd())\nprint('looping')\nwhile True:\n    pass\n"
    result, _ = _execute(code, "", 1.0, namespaces)
    assert (result.verdict, result.detail) == ("timed out", "no result within 1 s")
    assert result.output.endswith("/box\nlooping\n")  # printed before the kill, kept
    assert result.duration_s < 3
    assert _leftovers(result) == []


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("namespaces", [True, False])
def test_allocating_10_gb_is_refused(namespaces):
    _require("AS 1 GiB")
    result, _ = _execute("data = bytearray(10 * 1024**3)\n", "", 10.0, namespaces)
    assert (result.verdict, result.detail) == ("error", "MemoryError")


BOUNDED_FORKS = """
import os
print(os.getcwd(), flush=True)
children = 0
try:
    for children in range(500):
        if os.fork() == 0:
            os.read(os.pipe()[0], 1)  # blocks until the run ends and kills it
            os._exit(0)
finally:
    print("forked", children, flush=True)
"""


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("namespaces", [True, False])
@needs_proc
def test_process_limit_stops_500_forks(namespaces):
    """The bounded check that the process limit works, before any fork bomb is let loose."""
    result, _ = _execute(BOUNDED_FORKS, "", 10.0, namespaces)
    assert result.verdict == "error"
    assert result.detail.startswith("BlockingIOError: [Errno 11] Resource temporarily")
    forked = int(result.output.split("forked ")[1].split()[0])
    assert forked < 100
    assert _leftovers(result) == []


FORK_BOMB = """
import os
print(os.getcwd(), flush=True)
while True:
    try:
        os.fork()
    except OSError:
        pass
"""


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
@needs_proc
def test_a_fork_bomb_is_contained():
    result, _ = _execute(FORK_BOMB, "", 2.0)
    assert (result.verdict, result.detail) == ("timed out", "no result within 2 s")
    assert result.duration_s < 5
    assert _leftovers(result) == []


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_processes_that_escape_the_group_do_not_survive():
    _require("pid namespace")
    code = (
        "import os, time\nprint(os.getcwd(), flush=True)\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n"
        "    os._exit(0)\n"
    )
    result = run_tests(code, "")
    assert result.passed
    assert _leftovers(result) == []


@pytest.fixture
def open_dir():
    """A directory anyone may write to and delete from, holding a file anyone may write."""
    path = Path(tempfile.mkdtemp(prefix="labbench-test-open-"))
    path.chmod(0o777)
    (path / "victim.txt").write_text("keep me")
    (path / "victim.txt").chmod(0o666)
    yield path
    shutil.rmtree(path)


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "code",
    [
        "open('inside.txt', 'w').write('fine')\nopen(OPEN_DIR + '/new.txt', 'w')",  # writing
        "open(OPEN_DIR + '/victim.txt', 'a').write('!')",  # changing
        "import os\nos.remove(OPEN_DIR + '/victim.txt')",  # deleting
        "import shutil\nshutil.rmtree(OPEN_DIR)",
    ],
)
def test_files_outside_the_temp_dir_are_out_of_reach(open_dir, code):
    """Refused by the read-only filesystem, though file modes would let anyone do it."""
    _require("read-only filesystem")
    result = run_tests(f"OPEN_DIR = {str(open_dir)!r}\n{code}\n", "")
    assert result.verdict == "error"
    assert result.detail.startswith("OSError: [Errno 30] Read-only file system")
    assert [p.name for p in open_dir.iterdir()] == ["victim.txt"]
    assert (open_dir / "victim.txt").read_text() == "keep me"


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("namespaces", [True, False])
def test_secrets_in_our_environment_are_out_of_reach(monkeypatch, namespaces):
    monkeypatch.setenv("LABBENCH_TEST_TOKEN", SECRET)
    code = f"""
import os
found = [name for name, value in os.environ.items() if {SECRET!r} in value]
processes = os.listdir("/proc") if os.path.isdir("/proc") else []
for pid in [p for p in processes if p.isdigit()] + [str(os.getppid()), "{os.getpid()}"]:
    try:
        with open(f"/proc/{{pid}}/environ", "rb") as f:
            if {SECRET!r}.encode() in f.read():
                found.append(pid)
    except OSError:
        pass
print("found", found)
"""
    result, _ = _execute(code, "assert found, 'no secret found'", 10.0, namespaces)
    assert (result.verdict, result.detail) == ("failed", "assert found, 'no secret found'")
    assert "found []" in result.output


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_no_network():
    _require("network namespace")
    code = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n"
    result = run_tests(code, "")
    assert result.verdict == "error"
    assert result.detail == "OSError: [Errno 101] Network is unreachable"


def _machine_allows_namespaces() -> bool:
    """Whether util-linux's unshare can make the namespaces: if it can, so must the runner."""
    unshare = shutil.which("unshare")
    if not sys.platform.startswith("linux") or unshare is None:
        return False
    command = [unshare, "--mount", "--pid", "--net", "--ipc", "--uts", "--fork", "true"]
    return subprocess.run(command, capture_output=True, timeout=30).returncode == 0


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_containment_summary_says_what_is_on():
    summary = containment_summary()
    assert summary.startswith("separate process, temp dir, minimal env, stdin closed")
    assert "rlimits (AS 1 GiB, CPU 11 s, FSIZE 16 MiB, CORE 0" in summary
    if os.geteuid() == 0 and _machine_allows_namespaces():  # as here and in CI
        for protection in [
            "pid namespace",
            "network namespace",
            "temp dir a 64 MiB tmpfs",
            "read-only filesystem but the temp dir",
            "own /proc",
            "uid nobody",
            "no new privileges",
        ]:
            assert protection in summary


UNPRIVILEGED_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from labbench.sandbox.execution import containment_summary, run_tests
print(containment_summary())
print(run_tests("open(" + repr(sys.argv[2]) + ", 'w')", "").detail)
"""


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_unprivileged_users_get_namespaces_too(open_dir):
    """As a plain user (nobody, via setpriv), with a system Python nobody can read."""
    python, setpriv = Path("/usr/bin/python3"), shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None or not python.exists():
        pytest.skip("needs root, setpriv and /usr/bin/python3 to become an unprivileged user")
    project = Path(__file__).resolve().parent.parent
    target = str(open_dir / "new.txt")
    command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(python), "-I"]

    def as_nobody(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},
            cwd=open_dir,
            timeout=HANG_S,
        )

    # A clone inside a directory only its owner may enter (a mode-700 home) is closed to nobody.
    module = project / "labbench" / "sandbox" / "execution.py"
    readable = as_nobody("-c", "import sys; open(sys.argv[1]).close()", str(module))
    if readable.returncode != 0:
        reason = (readable.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"nobody cannot read the project at {project}: {reason}")
    completed = as_nobody("-c", UNPRIVILEGED_PROBE, str(project), target)
    assert completed.returncode == 0, completed.stderr
    summary, detail = completed.stdout.splitlines()
    if "user namespace" not in summary:
        pytest.skip(f"unprivileged user namespaces are off here: {summary}")
    for protection in ["pid namespace", "network namespace", "read-only filesystem", "NPROC 64"]:
        assert protection in summary
    assert detail == f"OSError: [Errno 30] Read-only file system: {target!r}"
    assert not Path(target).exists()


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_filling_the_disk_stops_at_the_temp_dir_size():
    _require("tmpfs")
    code = "for i in range(10):\n    open(f'f{i}', 'wb').write(b'x' * (15 << 20))\n"
    result = run_tests(code, "")
    assert (result.verdict, result.detail) == (
        "error",
        "OSError: [Errno 28] No space left on device",
    )


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_memory_is_capped_for_the_whole_run():
    """Each process stays under its 1 GiB address space; together they meet the cgroup's 2 GiB."""
    _require("GiB)")  # the memory cgroup's "cgroup (64 processes, 2 GiB)"
    code = """
import os, time
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        data = b"x" * (800 << 20)
        time.sleep(1)
        os._exit(0)
    children.append(pid)
killed = [os.waitpid(pid, 0)[1] & 0x7F for pid in children]
print("signals", killed)
"""
    result = run_tests(code, "assert not any(killed)")
    assert (result.verdict, result.detail) == ("failed", "assert not any(killed)")
    assert "9" in result.output.split("signals")[1]


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_a_long_detail_is_cut():
    result = run_tests("x = 1", f"assert {'x + ' * 200}x == 0")
    assert result.verdict == "failed"
    assert len(result.detail) == 300
    assert result.detail.endswith(" ...")


@pytest.mark.slow("a sandbox process per test")
@pytest.mark.timeout(60)
def test_common_imports_work_without_namespaces():
    """Here, as root without namespaces, nobody cannot read pyenv's standard library in /root:
    the modules solutions commonly import are loaded before the worker stops being root."""
    code = "import collections, hashlib, heapq, itertools, math, re\nprint(math.isqrt(16))\n"
    result, _ = _execute(code, "", 10.0, namespaces=False)
    assert (result.verdict, result.output) == ("passed", "4\n")


EVALUATOR = """
import os, signal, sys, threading, time
from labbench.sandbox.execution import run_tests
for _ in range(2):
    threading.Thread(
        target=run_tests, args=("import time\\ntime.sleep(60)\\n", "pass"),
        kwargs={"timeout_s": 120}, daemon=True,
    ).start()
time.sleep(2)
print(os.getpid(), flush=True)
if sys.argv[1] == "SIGKILL":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(0)
"""


def runners_of(evaluator_pid: int) -> list[int]:
    """Sandbox processes (runner, init, worker: forks keep the runner's argv) started by it."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"sandbox_runner.py") for arg in argv):
            if argv[-2:] in ([str(evaluator_pid).encode(), b""], [str(evaluator_pid).encode()]):
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("ending", ["exit", "SIGKILL"])
def test_no_run_outlives_the_evaluator(ending):
    child = subprocess.run(
        [sys.executable, "-c", EVALUATOR, ending], capture_output=True, text=True, timeout=50
    )
    evaluator = int(child.stdout.split()[0])
    deadline = time.monotonic() + 5
    while runners_of(evaluator) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runners_of(evaluator) == [], "sandbox processes outlived their evaluator"
