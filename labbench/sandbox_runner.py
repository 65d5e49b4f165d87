"""Child side of labbench.execution: runs one program's code and tests, contained.

Started by run_tests() as `python -I -S -B sandbox_runner.py WORK CPU_SECONDS`, so it must stay
importable without the labbench package (stdlib only, nothing from site-packages), and cheap to
start: no json, re or traceback (each costs 10-25 ms of imports, and this runs once per test).
It reads WORK/solution.py and WORK/tests.py, runs them in WORK/box and writes WORK/result: three
lines, the worker's exit code (-N for signal N), its verdict and its one-line detail (both empty
when it died before reporting).
"""

import os
import resource
import sys

MEMORY_BYTES = 1 << 30  # RLIMIT_AS: address space of the code under test
FILE_BYTES = 16 << 20  # RLIMIT_FSIZE: largest file it may write, its output file included
PROCESSES = 64  # RLIMIT_NPROC (per user; root ignores it)


def main() -> None:
    work, cpu_seconds = sys.argv[1], int(sys.argv[2])
    with open(os.path.join(work, "solution.py"), encoding="utf-8") as f:
        code = f.read()
    with open(os.path.join(work, "tests.py"), encoding="utf-8") as f:
        tests = f.read()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _worker(code, tests, os.path.join(work, "box"), cpu_seconds, write_end)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = _read_available(read_end)
    with open(os.path.join(work, "result"), "w", encoding="utf-8") as f:
        f.write(f"{os.waitstatus_to_exitcode(status)}\n{report}")


def _read_available(fd: int) -> str:
    """The worker's report, without waiting on a descendant that kept the pipe open."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    return data.decode("utf-8", "replace")


def _limit(kind: int, value: int) -> None:
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass  # not supported here (macOS refuses RLIMIT_AS), or already lower


def _worker(code: str, tests: str, box: str, cpu_seconds: int, result_fd: int) -> None:
    os.chdir(box)
    _limit(resource.RLIMIT_AS, MEMORY_BYTES)
    _limit(resource.RLIMIT_CPU, cpu_seconds)
    _limit(resource.RLIMIT_FSIZE, FILE_BYTES)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, PROCESSES)
    verdict, detail = _run(code, tests)
    try:
        os.write(result_fd, f"{verdict}\n{' '.join(detail.split())}\n".encode())
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


def _run(code: str, tests: str) -> tuple[str, str]:
    sources = {"solution.py": code, "tests.py": tests}
    namespace = {"__name__": "solution"}  # so `if __name__ == "__main__":` demos do not run
    try:
        for filename, source in sources.items():
            exec(compile(source, filename, "exec"), namespace)
    except AssertionError as e:
        _print_traceback(e, sources)
        return "failed", _failing_line(e, sources)
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are failures too
        _print_traceback(e, sources)
        return "error", _describe(e)
    return "passed", ""


def _describe(e: BaseException) -> str:
    message = str(e).strip()
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def _print_traceback(e: BaseException, sources: dict[str, str]) -> None:
    """Like traceback.print_exception, for our two files only (importing traceback is slow)."""
    try:
        sys.stdout.flush()  # what the code printed comes before its traceback
        lines = ["Traceback (most recent call last):"]
        tb = e.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename != __file__:
                lines.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}')
                source = sources.get(code.co_filename, "").splitlines()
                if 0 < tb.tb_lineno <= len(source):
                    lines.append("    " + source[tb.tb_lineno - 1].strip())
            tb = tb.tb_next
        if isinstance(e, SyntaxError) and e.text:
            lines.append(f'  File "{e.filename}", line {e.lineno}\n    {e.text.strip()}')
        lines.append(_describe(e))
        print("\n".join(lines), file=sys.stderr)
    except BaseException:  # noqa: BLE001 - MemoryError etc.: the verdict still gets written
        pass


def _failing_line(e: AssertionError, sources: dict[str, str]) -> str:
    """The source line, in our two files, where the assertion failed: `assert f(2) == 4`."""
    line = ""
    tb = e.__traceback__
    while tb is not None:
        lines = sources.get(tb.tb_frame.f_code.co_filename, "").splitlines()
        if 0 < tb.tb_lineno <= len(lines):
            line = lines[tb.tb_lineno - 1].strip()
        tb = tb.tb_next
    if not line:
        line = f"AssertionError: {e}" if str(e) else "AssertionError"
    return line


if __name__ == "__main__":
    main()
