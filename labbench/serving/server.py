"""Start, check and always stop an mlx_lm.server process.

Verified behaviour of mlx_lm.server 0.32 that shapes this module:
- `/health` answers 200 before the model is loaded, so readiness means one real 1-token chat
  completion succeeded.
- After a failed model load the process does not exit (`/health` turns 503, chat answers 404
  forever), and on a taken port it logs "Address already in use" and hangs. We watch its log
  and kill it, failing with the server's own error line.
- Requests must name `"model": "default_model"`: any other value makes it load another model.
- `/v1/models` crashes unless HF_HUB_CACHE points at an existing directory.
- SIGTERM stops it at once; SIGINT sometimes aborts, so we never forward Ctrl-C to it.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import requests

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError, describe_exit
from labbench.core.paths import user_path
from labbench.machine.blas import openblas_env

DEFAULT_HOST = "127.0.0.1"  # loopback only unless the user asks for more
STARTUP_TIMEOUT_S = 180.0  # a large model can take minutes to load on first use
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long
SERVED_MODEL = "default_model"  # the only model name that never makes the server load another
LOG_LINES_KEPT = 400
TIED_EXEC = Path(__file__).resolve().with_name("tied_exec.py")

# Lines that mean the server will never become ready although the process stays alive.
_FATAL_LOG = re.compile(r"Address already in use|Traceback \(most recent call last\)")
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+(?:Error|Exception)|OSError|KeyError|ValueError)\b.*")


# Per-request log lines that say nothing about why a server failed.
_CHATTER = re.compile(r" - INFO - |^INFO:|HTTP/1\.[01]\" \d{3}")


class ServerStartError(UserError):
    """The server could not be started; the message is the server's own error line."""


@dataclass
class ServerProcess:
    process: subprocess.Popen
    base_url: str
    model: str
    adapter: str | None
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES_KEPT))

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def error_line(self) -> str | None:
        """The last exception line the server logged, e.g. 'OSError: [Errno 98] Address ...'."""
        for line in reversed(self.log):
            if _ERROR_LINE.match(line):
                # "huggingface_hub.errors.HFValidationError: ..." -> "HFValidationError: ..."
                return re.sub(r"^\s*(?:\w+\.)+(?=\w+:)", "", line).strip()
        return None

    def log_excerpt(self, lines: int = 15) -> str:
        """The last lines of the server's log, without its per-request INFO chatter."""
        kept = [line for line in self.log if not _CHATTER.search(line)]
        return "\n".join(kept[-lines:])

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        """`with start_server(...) as server:` stops it on every exit path, Ctrl-C included."""
        self.stop()

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM the server's process group, then SIGKILL after `grace` seconds."""
        if self.process.poll() is not None:
            return
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait(timeout=grace)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        try:
            process.send_signal(signum)
        except ProcessLookupError:
            pass


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_env() -> dict[str, str]:
    env = openblas_env()
    hub_cache = env.get("HF_HUB_CACHE") or os.path.join(
        env.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub"
    )
    os.makedirs(hub_cache, exist_ok=True)
    env["HF_HUB_CACHE"] = hub_cache
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def server_command(model: str, adapter: str | None, host: str, port: int) -> list[str]:
    command = [sys.executable, "-m", "mlx_lm", "server", "--model", model]
    command += ["--host", host, "--port", str(port)]
    if adapter:
        command += ["--adapter-path", adapter]
    return tied_to_us(command)


def tied_to_us(command: list[str]) -> list[str]:
    """Linux: `command` killed by the kernel if our process dies, even by SIGKILL (see
    tied_exec.py for why this is not a preexec_fn)."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", "-S", str(TIED_EXEC), str(os.getpid()), *command]


def start_server(
    model: str,
    adapter: str | None = None,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_S,
    echo: bool = False,
) -> ServerProcess:
    """Start mlx_lm.server and return once it has answered a real chat completion.

    Raises ServerStartError (after killing the process) on a load failure, a taken port, an
    early exit or the startup timeout. `echo` copies the server's log to our stderr.
    """
    if port is None:
        port = free_port(host)
    elif not port_is_free(host, port):
        # Never talk to whatever already listens there: it is not the model we mean to score.
        raise ServerStartError(f"port {port} on {host} is already in use")
    process = subprocess.Popen(
        server_command(model, adapter, host, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=server_env(),
        text=True,
        errors="replace",
        start_new_session=True,  # Ctrl-C in the terminal must not reach it: we stop it ourselves
    )
    server = ServerProcess(process, f"http://{host}:{port}", model, adapter)
    threading.Thread(target=_pump_log, args=(server, echo), daemon=True).start()
    try:
        _wait_until_ready(server, startup_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _pump_log(server: ServerProcess, echo: bool) -> None:
    assert server.process.stdout is not None
    for line in server.process.stdout:
        server.log.append(line.rstrip("\n"))
        if echo:
            print(line, end="", file=sys.stderr, flush=True)


def _wait_until_ready(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    probe: dict[str, object] = {}
    prober: threading.Thread | None = None
    while True:
        if not server.alive():
            time.sleep(0.2)  # let the log pump catch the last lines
            reason = server.error_line() or describe_exit(server.process.returncode)
            raise ServerStartError(f"server for {_named(server.model)} did not start: {reason}")
        if any(_FATAL_LOG.search(line) for line in server.log):
            time.sleep(0.5)  # the traceback's last line names the error
            reason = server.error_line() or _last_line_matching(server, _FATAL_LOG)
            raise ServerStartError(f"server for {_named(server.model)} did not start: {reason}")
        if prober is None or not prober.is_alive():
            if probe.get("ready"):
                return
            if probe.get("dead"):
                time.sleep(0.5)
                reason = server.error_line() or str(probe["dead"])
                raise ServerStartError(f"server for {_named(server.model)} did not start: {reason}")
            probe.clear()
            prober = threading.Thread(target=_probe_once, args=(server, probe), daemon=True)
            prober.start()
        if time.monotonic() > deadline:
            reason = server.error_line() or "no answer to a test completion"
            raise ServerStartError(
                f"server for {_named(server.model)} not ready after {timeout:.0f} s: {reason}"
            )
        time.sleep(0.1)


def _named(model: str) -> str:
    """How a model is named in errors: a hub id is said to be one (it may not be cached)."""
    if Path(model).exists():
        return model
    return f"{model} (not a local directory, so tried as a Hugging Face id)"


def _last_line_matching(server: ServerProcess, pattern: re.Pattern) -> str:
    return next((line for line in reversed(server.log) if pattern.search(line)), "unknown error")


def _probe_once(server: ServerProcess, probe: dict[str, object]) -> None:
    """One 1-token chat completion: the only honest readiness signal."""
    try:
        response = requests.post(
            f"{server.base_url}/v1/chat/completions",
            json={
                "model": SERVED_MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1,
            },
            timeout=(1.0, None),
        )
    except requests.ConnectionError:
        time.sleep(0.2)
        return
    except requests.RequestException as error:
        probe["dead"] = str(error)
        return
    if response.status_code == 200:
        probe["ready"] = True
    else:
        probe["dead"] = f"test completion answered HTTP {response.status_code}: {response.text}"


def resolve_model(model: str | None, named: str = "--model") -> str:
    """The built-in tiny model when none is given (built on first use), a local directory as an
    absolute path, anything else as a Hugging Face id. A path that is clearly local and missing
    fails here, before any server starts or the network is tried; the error starts with
    `named` and the model."""
    if model is None:
        from labbench.tiny.tinymodel import ensure_tiny_model

        return str(ensure_tiny_model())
    path = user_path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():  # what every mlx-lm model directory has
            raise UserError(f"{named} {model}: no config.json in {path}: not a model directory")
        return str(path.resolve())
    if path.exists():
        raise UserError(f"{named} {model}: {path} is a file, not a model directory")
    if looks_local(model):
        raise UserError(f"{named} {model}: no such directory ({path})")
    return model


def looks_local(model: str) -> bool:
    """A path, not a hub id (`org/name`): it starts with `.`, `/` or `~`, has more than one
    `/`, or its first part is a folder where the user ran the command or in the project."""
    first = model.split("/")[0]
    return (
        model.startswith((".", "/", "~"))
        or model.count("/") > 1
        or user_path(first).is_dir()
        or (PROJECT_ROOT / first).is_dir()
    )


def check_adapter(adapter: str | None) -> str | None:
    """An adapter directory as an absolute path; it must hold adapter_config.json."""
    if adapter is None:
        return None
    path = user_path(adapter)
    if not path.is_dir():
        raise UserError(f"--adapter {adapter}: no such directory ({path})")
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"--adapter {adapter}: no adapter_config.json in {path}")
    return str(path.resolve())
