"""Child side of labbench.sandbox.execution: runs one program's code and tests, contained.

Started by run_tests() as
`python -I -S -B sandbox_runner.py WORK CPU_SECONDS OPTIONS GO_FD EVALUATOR_PID`
(OPTIONS: "plain" for no namespaces, else "namespaces"; GO_FD gives one byte when run_tests() has
put this process in the run's cgroups, "p" when one of them limits processes; on Linux the runner
dies with the evaluator, whose pid is the last argument, however it dies), so it must stay
importable without the labbench package (stdlib only, nothing from site-packages), and cheap to
start: no json, re or traceback (each costs 10-25 ms of imports, and this runs once per test).
It reads WORK/solution.py and WORK/tests.py, runs them in WORK/box and writes WORK/result: four
lines, the worker's exit code (-N for signal N), its verdict and one-line detail (both empty when
it died before reporting), and the protections that were active, comma-separated.

Processes: this runner -> on Linux, when namespaces can be made, an init (pid 1 of a new pid
namespace: when it exits the kernel kills everything left inside) -> the worker, which limits
itself, drops root and runs the code. Without namespaces the worker is the runner's child.
"""

import io
import os
import resource
import sys

MEMORY_BYTES = 1 << 30  # RLIMIT_AS: address space of the code under test
FILE_BYTES = 16 << 20  # RLIMIT_FSIZE: largest file it may write, its output file included
PROCESSES = 64  # RLIMIT_NPROC: processes of its (real) user, threads included; root ignores it
NOBODY = 65534  # the uid and gid the worker runs as when we are root
DETAIL_CHARS = 300  # a verdict's detail is cut to this (a HumanEval assert can be long)
BOX_BYTES = 64 << 20  # size of the tmpfs that is its working directory, where namespaces allow
# Root without a mount namespace, with Python where others cannot read it (pyenv in /root):
# the worker still becomes nobody (safer than model code running as root), with these modules,
# the ones solutions to tests like HumanEval's import, loaded before; others fail to import.
PRELOADED = (
    "bisect collections copy datetime decimal fractions functools hashlib heapq itertools json "
    "math operator random re statistics string time typing"
).split()
UNREADABLE = " (it cannot read the standard library: only common modules were loaded for it)"

# From <sched.h>, <sys/mount.h> and <sys/prctl.h>.
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWIPC, CLONE_NEWUTS = 0x08000000, 0x04000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_NOATIME, MS_NODIRATIME, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 16384, 1 << 18, 1 << 21
MS_STRICTATIME = 1 << 24
MOUNT_OPTIONS = {  # per-mount options a remount must keep (inside a user namespace they are locked)
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


class Job:
    """What init and the worker need, settled in main() before anything forks."""

    def __init__(self, work: str, cpu_seconds: int, result_fd: int) -> None:
        with open(os.path.join(work, "solution.py"), encoding="utf-8") as f:
            self.code = f.read()
        with open(os.path.join(work, "tests.py"), encoding="utf-8") as f:
            self.tests = f.read()
        self.box = os.path.realpath(os.path.join(work, "box"))
        self.cpu_seconds = cpu_seconds
        self.result_fd = result_fd  # the pipe's write end, for _report()
        self.drop_root = os.geteuid() == 0  # asked before a user namespace makes us root in it
        self.pids_cgroup = False  # when the run has its own, RLIMIT_NPROC is not needed
        self.isolate = True  # namespaces where the machine allows them


def main() -> None:
    work, cpu_seconds, options, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    _die_with_parent(int(sys.argv[5]))
    read_end, write_end = os.pipe()
    job = Job(work, cpu_seconds, write_end)
    job.isolate = options != "plain"
    # Opened before the mount namespace (which this process shares) turns read-only.
    result_file = open(os.path.join(work, "result"), "w", encoding="utf-8")  # noqa: SIM115
    # run_tests() is putting us in the run's cgroups: a fork before it is done would escape them.
    job.pids_cgroup = os.read(go, 1) == b"p"
    os.close(go)
    linux = sys.platform.startswith("linux") and job.isolate
    libc, namespaces = _enter_namespaces() if linux else (None, [])
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        result_file.close()
        try:
            if libc is None:
                _worker(job, None)
            _init(job, libc)
        except BaseException as e:  # noqa: BLE001 - a child never returns into main()
            detail = f"the sandbox could not be set up: {_describe(e)}"
            _report(write_end, verdict="error", detail=detail)
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report, protections = {"exit": str(os.waitstatus_to_exitcode(status))}, namespaces
    for line in _read_available(read_end).splitlines():
        tag, _, value = line.partition("\t")
        if tag == "contained":
            protections = [*protections, value] if value else protections
        else:
            report[tag] = value
    fields = [report["exit"], report.get("verdict", ""), report.get("detail", "")]
    fields.append(", ".join(protections))
    with result_file:
        result_file.write("\n".join(fields) + "\n")


def _die_with_parent(evaluator_pid: int) -> None:
    """On Linux, SIGKILL when the evaluator exits (even SIGKILLed), so no run outlives it; init
    is tied to this process the same way, and the kernel ends its pid namespace with it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 9)
    except (ImportError, OSError, AttributeError):
        return
    if os.getppid() != evaluator_pid:  # it died before the prctl took effect
        os._exit(1)


def _read_available(fd: int) -> str:
    """What was reported, without waiting on a descendant that kept the pipe open."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    return data.decode("utf-8", "replace")


def _report(fd: int, **fields: str) -> None:
    """Tagged one-line fields, in one write: under PIPE_BUF, so never interleaved with others."""
    text = ""
    for tag, value in fields.items():
        value = " ".join(value.split())
        if len(value) > DETAIL_CHARS:
            value = value[: DETAIL_CHARS - 4] + " ..."
        text += f"{tag}\t{value}\n"
    os.write(fd, text.encode())


# ---------------------------------------------------------------------------------------------
# Linux namespaces


def _enter_namespaces():
    """New mount, pid, network, IPC and UTS namespaces (as root, or inside a new user namespace
    when unprivileged ones are allowed). (libc, what is on), or (None, []) when none can be made."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None, []
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if os.geteuid() == 0:  # root mapped to root in a user namespace would gain nothing
        if libc.unshare(flags) != 0:
            return None, []
        return libc, ["pid namespace", "network namespace"]
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(flags | CLONE_NEWUSER) != 0:
        return None, []
    try:  # be root inside the new user namespace: enough to mount, nothing outside it
        for name, text in (
            ("uid_map", f"0 {uid} 1"),
            ("setgroups", "deny"),
            ("gid_map", f"0 {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError:
        return None, []  # cannot map ourselves: the namespaces are useless, carry on without
    return libc, ["user namespace", "pid namespace", "network namespace"]


def _init(job: Job, libc) -> None:
    """Pid 1 of the new pid namespace: sets up the filesystem, runs the worker, reaps orphans,
    and exits with the worker, which makes the kernel kill whatever the code left running."""
    libc.prctl(PR_SET_PDEATHSIG, 9)  # the runner killed on timeout takes us with it
    _report(job.result_fd, contained=_contain_filesystem(libc, job.box, job.drop_root))
    pid = os.fork()
    if pid == 0:
        _worker(job, libc)
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if reaped == pid:
            _report(job.result_fd, exit=str(os.waitstatus_to_exitcode(status)))
            os._exit(0)


def _mount(libc, source, target: str, fstype, flags: int, data=None) -> bool:
    encode = lambda value: value.encode() if isinstance(value, str) else value  # noqa: E731
    return libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) == 0


def _contain_filesystem(libc, box: str, drop_root: bool) -> str:
    """Everything read-only but the box, which becomes a small tmpfs (so the code cannot fill
    the disk), and a /proc that shows only this namespace."""
    done = []
    if not _mount(libc, None, "/", None, MS_REC | MS_PRIVATE):
        return ""  # our mounts would reach the host's: touch nothing
    _reach_stdlib(libc)
    owner = f",uid={NOBODY},gid={NOBODY}" if drop_root else ""
    box_options = f"size={BOX_BYTES},mode=0700{owner}"
    box_mounted = _mount(libc, "none", box, "tmpfs", MS_NOSUID | MS_NODEV, box_options)
    if box_mounted:
        done.append(f"temp dir a {BOX_BYTES >> 20} MiB tmpfs")
    else:
        box_mounted = _mount(libc, box, box, None, MS_BIND)
    writable = 0
    for mount_point, options in _mounts():
        if mount_point == box and box_mounted:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        flags |= sum(MOUNT_OPTIONS.get(option, 0) for option in set(options.split(",")))
        if not _mount(libc, None, mount_point, None, flags):
            writable += 1
    if box_mounted and writable == 0:
        done.append("read-only filesystem but the temp dir")
    elif box_mounted:
        done.append(f"read-only filesystem but the temp dir and {writable} mounts")
    if _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC):
        done.append("own /proc")
    elif _mount(libc, "none", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC):
        done.append("empty /proc")
    return ", ".join(done)


def _mounts() -> list[tuple[str, str]]:
    """(mount point, per-mount options) from /proc/self/mountinfo, octal escapes decoded."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        fields = [line.split() for line in f]
    escapes = {"\\040": " ", "\\011": "\t", "\\012": "\n", "\\134": "\\"}
    mounts = []
    for parts in fields:
        if len(parts) > 5:
            for escape, character in escapes.items():
                parts[4] = parts[4].replace(escape, character)
            mounts.append((parts[4], parts[5]))
    return mounts


def _reach_stdlib(libc) -> None:
    """When the standard library sits under a directory others cannot enter (pyenv in /root),
    cover that directory with an empty tmpfs and bind only the standard library back into it,
    so the worker can still import after it stops being root."""
    stdlib = os.path.dirname(os.__file__)
    parts = stdlib.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        closed = "/" + "/".join(parts[:depth])
        if not os.stat(closed).st_mode & 0o001:
            break
    else:
        return
    keep = os.open(stdlib, os.O_PATH)
    if _mount(libc, "none", closed, "tmpfs", MS_NOSUID | MS_NODEV):
        os.chmod(closed, 0o755)
        os.makedirs(stdlib, 0o755, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{keep}", stdlib, None, MS_BIND | MS_REC)
    os.close(keep)


# ---------------------------------------------------------------------------------------------
# The worker


def _limit(kind: int, value: int) -> bool:
    # A hard limit above the soft one, so running out of CPU time is SIGXCPU, not SIGKILL.
    hard = value + 1 if kind == resource.RLIMIT_CPU else value
    try:
        resource.setrlimit(kind, (value, hard))
    except (ValueError, OSError):
        return False  # not supported here (macOS refuses RLIMIT_AS), or already lower
    return True


def _worker(job: Job, libc) -> None:
    os.chdir(job.box)
    limits = {
        f"AS {MEMORY_BYTES >> 30} GiB": (resource.RLIMIT_AS, MEMORY_BYTES),
        f"CPU {job.cpu_seconds} s": (resource.RLIMIT_CPU, job.cpu_seconds),
        f"FSIZE {FILE_BYTES >> 20} MiB": (resource.RLIMIT_FSIZE, FILE_BYTES),
        "CORE 0": (resource.RLIMIT_CORE, 0),
        f"NPROC {PROCESSES}": (resource.RLIMIT_NPROC, PROCESSES),
    }
    if job.pids_cgroup:  # NPROC counts every process of the user: other sandboxes' too
        del limits[f"NPROC {PROCESSES}"]
    applied = [name for name, (kind, value) in limits.items() if _limit(kind, value)]
    _report(job.result_fd, contained=f"rlimits ({', '.join(applied)})")
    if job.drop_root:  # root ignores RLIMIT_NPROC and file modes: never run model code as root
        readable = _reachable(os.path.dirname(os.__file__))
        if not readable:
            for module in PRELOADED:
                __import__(module)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        _report(job.result_fd, contained="uid nobody" + ("" if readable else UNREADABLE))
    if libc is not None and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
        _report(job.result_fd, contained="no new privileges")
    sys.argv = ["solution.py"]
    if isinstance(sys.stdout, io.TextIOWrapper):  # what it printed survives a kill on timeout
        sys.stdout.reconfigure(line_buffering=True)
    worker = os.getpid()
    verdict, detail = _run(job.code, job.tests)
    try:
        if os.getpid() == worker:  # not a process the code forked, which ends here too
            _report(job.result_fd, verdict=verdict, detail=detail)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


def _reachable(directory: str) -> bool:
    """Whether a user other than us could read `directory` (every parent open to others)."""
    path = "/"
    for part in directory.strip("/").split("/"):
        path = os.path.join(path, part)
        if not os.stat(path).st_mode & 0o001:
            return False
    return bool(os.stat(directory).st_mode & 0o004)


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
