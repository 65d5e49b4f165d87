"""Data-parallel LoRA through MLX's own engine: `mlx.launch` starts the ranks, we watch them.

mlx-lm's trainer already averages gradients across ranks, splits each (global) batch between
them and saves adapters on rank 0. What it leaves to us (measured, see the README):
- `mlx.launch` exits 0 when a rank crashed: every rank prints a status line last (the launcher
  relays it, from remote hosts too), and a rank with no status, or a failed one, fails the run.
- A rank that comes up at world size 1 trains alone: each rank asserts the world size.
- Only rank 0 writes to the ledger (its loss reports) and the adapter config.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labbench import PROJECT_ROOT
from labbench.core import cli
from labbench.core.errors import UserError, describe_exit
from labbench.core.formatting import without_escapes

BACKENDS = ("ring", "mpi")
RANK_SCRIPT = PROJECT_ROOT / "scripts" / "train_rank.py"
STOP_GRACE_S = 5.0  # after a rank failed or Ctrl-C: SIGTERM to every rank, SIGKILL after this
LAUNCH_LOG = "launch.log"  # in adapters/<run>/launch/: every rank's output, statuses included
SPEC_FILE = "spec.json"  # beside it: what the ranks were asked to do
STATUS_MARKER = "labbench-rank-status: "
TRACE_MARKER = "labbench-rank-trace: "  # a rank's traceback: kept in the launch log, not shown
RING_PORT = 32323  # mlx.launch's first ring port when -p is not given
LOCAL_HOST = "127.0.0.1"  # the only host name mlx.launch runs on this machine (no ssh)
# The launcher's own line for each rank that ended badly; our error line says it better.
_LAUNCHER_NODE_WARNING = re.compile(r"^\[WARN\] Node with rank \d+ (exited with code|was killed)")


@dataclass(frozen=True)
class Launch:
    """How training is spread: `world_size` ranks on `hosts` (ssh names), over `backend`."""

    world_size: int
    backend: str = "ring"
    hostfile: Path | None = None
    hosts: tuple[str, ...] = (LOCAL_HOST,)
    port: int | None = None  # the ring's first port (mlx.launch -p)
    ips: tuple[tuple[str, ...], ...] = field(default=(), compare=False)  # each host's, in order

    def config(self) -> dict:
        """What the run records about the launch."""
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "hosts": list(self.hosts),
            "hostfile": str(self.hostfile) if self.hostfile else None,
            "port": self.port,
        }


def add_launch_args(parser: argparse.ArgumentParser, np_help: str, hosts_help: str) -> None:
    """np=, hosts=, backend= and port=, as `train` and `bench` take them (see launch_of)."""
    parser.add_argument("--np", type=int, help=np_help)
    parser.add_argument("--hosts", help=hosts_help)
    parser.add_argument("--backend", help="mlx.distributed backend (default: ring)")
    parser.add_argument(
        "--port", type=cli.port_number, help="the ring backend's first port (32323)"
    )


def launch_of(args: argparse.Namespace, batch_size: int) -> Launch | None:
    """The launch add_launch_args' flags ask for, its global batch checked against the ranks."""
    hostfile = cli.user_path(args.hosts) if args.hosts else None
    launch = plan_launch(args.np, hostfile, args.backend, args.port)
    if launch:
        check_batch(batch_size, launch)
        check_ring_ports(launch)
    return launch


def plan_launch(
    np: int | None, hostfile: Path | None, backend: str | None, port: int | None
) -> Launch | None:
    """The launch asked for by np= / hosts= (None: train in this process). Raises UserError."""
    if np is not None and hostfile is not None:
        raise UserError("--np and --hosts: give one (a hostfile sets the number of ranks)")
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    if hostfile is not None:
        hosts, ips, file_backend = read_hostfile(hostfile)
        chosen = backend or file_backend or "ring"
        return Launch(len(hosts), chosen, hostfile, hosts, port, ips)
    if np is None or np == 1:
        return None
    if np < 1:
        raise UserError(f"--np {np}: give at least 1 rank")
    return Launch(np, backend or "ring", None, (LOCAL_HOST,) * np, port, ((LOCAL_HOST,),) * np)


def read_hostfile(
    path: Path,
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], str | None]:
    """The ssh names, IPs and backend of mlx's JSON hostfile ({"backend": ..., "hosts":
    [{"ssh": ..., "ips": [...]}, ...]}, as `mlx.distributed_config` writes). Raises UserError."""
    try:
        content = json.loads(path.read_text())
    except OSError as error:
        raise UserError(f"--hosts {path}: cannot read it ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise UserError(f"--hosts {path}: not JSON ({error})") from None
    hosts = content.get("hosts") if isinstance(content, dict) else content
    if not isinstance(hosts, list):
        raise UserError(f'--hosts {path}: no "hosts" list (see the README for the format)')
    if not hosts:
        raise UserError(f'--hosts {path}: the "hosts" list is empty: name one host per rank')
    names, ips = [], []
    for index, host in enumerate(hosts):
        if not isinstance(host, dict) or not isinstance(host.get("ssh"), str):
            raise UserError(f'--hosts {path}: host {index} has no "ssh" name')
        names.append(host["ssh"])
        ips.append(tuple(ip for ip in host.get("ips") or () if isinstance(ip, str)))
    backend = content.get("backend") if isinstance(content, dict) else None
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"--hosts {path}: backend {backend!r} is not one of {', '.join(BACKENDS)}")
    return tuple(names), tuple(ips), backend


def check_batch(batch_size: int, launch: Launch) -> None:
    """mlx-lm splits each batch between the ranks; it raises mid-start on a remainder."""
    if batch_size % launch.world_size:
        raise UserError(
            f"--batch-size {batch_size} does not divide by the {launch.world_size} ranks: "
            f"it is the global batch, split between them"
        )


def check_ring_ports(launch: Launch) -> None:
    """The ring's ports that ranks on this machine will listen on must be free, or the rank
    fails to bind after the run started. mlx.launch numbers them from the first port, one per
    IP of each host in order; remote hosts' ports cannot be checked from here."""
    from labbench.serving.server import port_is_free  # requests: not for --help

    if launch.backend != "ring":
        return
    ring = [(host, ip) for host, ips in zip(launch.hosts, launch.ips, strict=False) for ip in ips]
    first = launch.port or RING_PORT
    for port, (host, ip) in enumerate(ring, start=first):
        if host == LOCAL_HOST and not port_is_free(ip, port):
            raise UserError(
                f"port {port} on {ip} is already in use: the ring backend's ranks listen on "
                f"ports {first}-{first + len(ring) - 1} (pass port=N for others)"
            )


def launcher() -> str:
    """mlx.launch beside this Python (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / "mlx.launch"
    found = str(beside) if beside.is_file() else shutil.which("mlx.launch")
    if found is None:
        raise UserError("mlx.launch not found: install mlx into this Python (pip install mlx)")
    return found


def launch_command(launch: Launch, spec: dict) -> list[str]:
    command = [launcher(), "--backend", launch.backend]
    if launch.hostfile is not None:
        command += ["--hostfile", str(launch.hostfile)]
    else:
        command += ["-n", str(launch.world_size)]
    if launch.port is not None:
        command += ["-p", str(launch.port)]
    # `--` keeps the script's own arguments from the launcher's parser. The spec goes inline:
    # a remote rank cannot read a file written here.
    return [*command, "--python", sys.executable, "--", str(RANK_SCRIPT), json.dumps(spec)]


def read_statuses(log: str) -> dict[str, dict]:
    """Each rank's status line (STATUS_MARKER + JSON, printed last; the launcher relays remote
    ranks' output too), by rank name: "0", "1", ... or "pid123" for a rank started unlaunched."""
    statuses = {}
    for line in log.splitlines():
        _, marker, rest = line.partition(STATUS_MARKER)
        if marker:
            try:
                status = json.loads(rest)
            except json.JSONDecodeError:  # cut by another rank's output: counted as missing
                continue
            statuses[str(status.get("rank"))] = status
    return statuses


def rank_failures(statuses: dict[str, dict], world_size: int) -> list[str]:
    """What went wrong on each rank: `rank N: error` for a rank that failed, `rank N: left no
    status` for one that printed none (killed, crashed in C). Ranks that came up outside the
    launch (named by pid) are failures too. Ranks we stopped are named after the ones that
    failed, and are no failure on their own (Ctrl-C)."""
    failures, stopped = [], []
    for rank in range(world_size):
        status = statuses.get(str(rank))
        if status is None:
            failures.append(f"rank {rank}: left no status (it crashed or never started)")
        elif status.get("stopped"):  # by us, after another rank failed, or by Ctrl-C
            stopped.append(f"rank {rank}: stopped")
        elif not status.get("ok"):
            failures.append(f"rank {rank}: {status.get('error')}")
    for name, status in sorted(statuses.items()):
        if name.startswith("pid"):
            failures.append(f"a rank outside the launch ({name}): {status.get('error')}")
    return failures + stopped if failures else []


def _any_rank_failed(launch_dir: Path, log_path: Path) -> bool:
    """A rank printed a failed status, or a local rank's process is gone without one (killed,
    crashed in C): the others would wait forever in their next all_sum."""
    statuses = read_statuses(log_path.read_text(errors="replace"))
    if any(not status.get("ok") for status in statuses.values()):
        return True
    for path in launch_dir.glob("rank-*.pid"):
        name = path.stem.removeprefix("rank-")
        pid = path.read_text().strip()
        if not pid:  # the rank is writing it right now
            continue
        if not _alive(int(pid)) and name not in statuses:
            # Its status line may be on its way through the launcher: look once more.
            time.sleep(0.5)
            return name not in read_statuses(log_path.read_text(errors="replace"))
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process has the pid now
        return False
    return True


def _stop(process: subprocess.Popen, launch_dir: Path, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to each local rank first, so that it can say it was stopped (its status goes
    out through the launcher); then to the launcher's process group, remote ranks dying with
    their `ssh -tt` session; SIGKILL after `grace` each time."""
    for path in launch_dir.glob("rank-*.pid"):
        pid = int(path.read_text())
        try:
            if os.getpgid(pid) == process.pid:  # still one of this launch's ranks
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    try:
        process.wait(grace)  # the launcher ends once its ranks have
        return
    except subprocess.TimeoutExpired:
        pass
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_ranks(launch: Launch, spec: dict, launch_dir: Path, command: list[str] | None = None):
    """Start the ranks through `mlx.launch` and wait for all of them; returns their statuses by
    rank. Local ranks leave their pid in launch_dir (remote ones are on other machines), so one
    killed is noticed. Raises UserError naming each failed rank, whatever the launcher's exit
    code. Ctrl-C (KeyboardInterrupt) stops every rank before it propagates. `command` replaces
    the launcher's (tests start a rank without it)."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    for stale in launch_dir.glob("rank-*.pid"):  # an earlier launch's (a resumed run)
        stale.unlink()
    spec = {**spec, "pid_dir": str(launch_dir) if _local(launch) else None}
    (launch_dir / SPEC_FILE).write_text(json.dumps(spec, indent=2))  # for people, afterwards
    log_path = launch_dir / LAUNCH_LOG
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            (command or launch_command(launch, spec)) + ([json.dumps(spec)] if command else []),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one group to stop; Ctrl-C reaches us, then we stop it
            cwd=os.getcwd(),
        )
        relayed = 0
        try:
            while process.poll() is None:
                relayed = _relay(log_path, relayed)
                if _any_rank_failed(launch_dir, log_path):
                    _stop(process, launch_dir)
                    break
                time.sleep(0.2)
        except BaseException:
            _stop(process, launch_dir)
            raise
        finally:
            _relay(log_path, relayed)
    statuses = read_statuses(log_path.read_text(errors="replace"))
    failures = rank_failures(statuses, launch.world_size)
    if failures:
        # A rank that said what went wrong is its own clue; for one that said nothing (killed,
        # crashed in C) the log's last line is the best there is.
        silent = any(str(rank) not in statuses for rank in range(launch.world_size))
        where = _log_tail(log_path) if silent else f" (launch log: {log_path})"
        raise UserError("; ".join(failures) + where)
    if process.returncode:
        raise UserError(f"mlx.launch {describe_exit(process.returncode)}{_log_tail(log_path)}")
    return statuses


def _relay(log_path: Path, start: int) -> int:
    """Show the ranks' new whole lines (rank 0's loss reports, tracebacks) on our stderr, but
    not their status lines; returns how far the log has been shown."""
    with open(log_path, "rb") as log:
        log.seek(start)
        text = log.read()
    done = text.rfind(b"\n") + 1
    for line in text[:done].decode(errors="replace").splitlines():
        if _shown(line):
            print(line, file=sys.stderr, flush=True)
    return start + done


def _shown(line: str) -> bool:
    """A line of the ranks' output worth showing: not a status or a traceback (both stay in
    the launch log; the error line says what failed) nor the launcher's own note of a rank
    that ended badly."""
    plain = without_escapes(line).strip()
    return (
        bool(plain)
        and STATUS_MARKER not in line
        and TRACE_MARKER not in line
        and not _LAUNCHER_NODE_WARNING.match(plain)
    )


def _local(launch: Launch) -> bool:
    return all(host == "127.0.0.1" for host in launch.hosts)


def train_on_ranks(
    launch: Launch,
    model: str,
    data: Path,
    settings: Any,
    adapter_dir: Path,
    ledger: str | None = None,
    run_id: int = 0,
    resume_from: Any = None,
) -> dict:
    """Train `settings` (a LoraSettings) on the ranks into adapter_dir, from `resume_from` (a
    trainstate.Checkpoint) when given; rank 0 writes its loss reports into `ledger` under
    `run_id` (None: into its status only). Returns rank 0's status (load_seconds, reports).
    Raises as run_ranks does."""
    spec = {
        "model": model,
        "data": str(data.resolve()),
        "settings": asdict(settings),
        "adapter_dir": str(adapter_dir.resolve()),
        "ledger": ledger,
        "run_id": run_id,
        "world_size": launch.world_size,
        "resume_from": {k: str(v) for k, v in asdict(resume_from).items()} if resume_from else None,
    }
    return run_ranks(launch, spec, adapter_dir / "launch")["0"]


def _log_tail(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if _shown(line)]
    if not lines:
        return f" (launch log: {log_path})"
    return f" (launch log {log_path}: {without_escapes(lines[-1]).strip()[:300]})"
